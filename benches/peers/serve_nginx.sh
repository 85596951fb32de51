#!/usr/bin/env bash
# `readthrough serve` against nginx (proxy_cache + proxy_cache_lock + sendfile), both
# HTTP caching reverse proxies on loopback, in one run, on one machine, one client set.
#
# One throttled origin (benches/peer_origin.rs) sits behind both servers. It serves
# /blob (SIZE_MIB MiB, paced over about FILL_SECS s, as a slow upstream would) and
# /small (SMALL_KIB KiB at once), any query string, and counts the requests it gets.
# Each cache lives in its own tmp folder. Every measurement runs against both servers
# in the same run, one after the other, the order swapped from one step to the next:
#
#   1. cold fan-out: for each N in CLIENTS, N curl clients at once on a key neither
#      server has seen (a fresh query string per server and per N); per server the
#      median and max time to first byte and to last byte as curl reports them
#      (time_starttransfer, time_total), bodies of the wrong size or status, and how
#      many requests reached the origin;
#   2. small hits: wrk (WRK_THREADS threads, WRK_CONNS keep-alive connections,
#      WRK_SECS s) on a cached /small object, ROUNDS rounds per server; requests/s;
#   3. large hits: LARGE_RUNS curl downloads, one at a time, of the cached /blob from
#      step 1 (megabytes per second, 1 MB = 10^6 bytes); then wrk with LARGE_CONNS
#      connections for LARGE_SECS s on it (aggregate MB/s);
#   4. peak memory: VmHWM (peak resident set) from /proc/PID/status, of the
#      `readthrough serve` process, and of nginx's worker processes summed (the master,
#      cache manager and cache loader apart), read after every step; the last reading
#      is the peak over the whole run.
# Then a table, and the goals of issue 18 (first byte on a cold key >= 100x earlier
# than nginx's; small-hit requests/s >= nginx's; large-hit throughput >= 0.9 of
# nginx's) checked against the numbers measured.
#
# Neither server writes an access log (nginx: access_log off; readthrough: --quiet),
# so neither pays for one. nginx runs `worker_processes auto` (one per core), the
# settings of nginx.sh plus keepalive_requests raised so that wrk's connections stay
# open as they do with readthrough; readthrough serve runs as it comes.
#
# Usage: benches/peers/serve_nginx.sh
#   env knobs (defaults): CLIENTS="20 200" SIZE_MIB=256 FILL_SECS=2 SMALL_KIB=4
#     WRK_SECS=10 WRK_THREADS=2 WRK_CONNS=4 ROUNDS=2 LARGE_RUNS=5 LARGE_SECS=10
#     LARGE_CONNS=2 KEEP=0 (1: keep the work folder, with both servers' logs)
#   A smoke test (numbers meaningless): CLIENTS="3 5" SIZE_MIB=8 FILL_SECS=0.5 \
#     WRK_SECS=2 ROUNDS=1 LARGE_RUNS=2 LARGE_SECS=2 benches/peers/serve_nginx.sh
# Installs nginx (Debian's nginx-light, else nginx), wrk and curl with apt-get when
# missing, and builds `readthrough` and the origin in release mode. Every process it
# starts is stopped on exit (trap), and its tmp folder removed (unless KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLIENTS=${CLIENTS:-20 200}
SIZE_MIB=${SIZE_MIB:-256}
FILL_SECS=${FILL_SECS:-2}
SMALL_KIB=${SMALL_KIB:-4}
WRK_SECS=${WRK_SECS:-10}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-4}
ROUNDS=${ROUNDS:-2}
LARGE_RUNS=${LARGE_RUNS:-5}
LARGE_SECS=${LARGE_SECS:-10}
LARGE_CONNS=${LARGE_CONNS:-2}
KEEP=${KEEP:-0}

# --- tools ---------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need curl || ! need wrk; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    need curl || apt-get install -y -qq curl >/dev/null
    need wrk || apt-get install -y -qq wrk >/dev/null
    need nginx || apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(PATH="$PATH:/usr/sbin:/sbin" command -v nginx)

cargo build --release --quiet --bin readthrough
ORIGIN=$(cargo bench --bench peer_origin --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
RT=target/release/readthrough
[ -x "$ORIGIN" ] && [ -x "$RT" ] || { echo "build failed" >&2; exit 1; }

# --- processes, and their cleanup ----------------------------------------------------
WORK=$(mktemp -d /tmp/readthrough-serve-nginx.XXXXXX)
ORIGIN_PID= ; NGINX_STARTED= ; RT_PID=
cleanup() {
    set +e
    [ -n "$RT_PID" ] && { kill -TERM "$RT_PID" 2>/dev/null; wait "$RT_PID" 2>/dev/null; }
    [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -s stop 2>/dev/null
    # The master is not our child (nginx daemonizes): wait for it to go.
    for _ in $(seq 50); do [ -e "$WORK/nginx.pid" ] || break; sleep 0.1; done
    [ -n "$ORIGIN_PID" ] && { exec 3>&- ; wait "$ORIGIN_PID" 2>/dev/null; }
    if [ "$KEEP" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The origin runs until its stdin (fd 3 here) closes.
mkfifo "$WORK/origin.in"
"$ORIGIN" serve "$SIZE_MIB" "$FILL_SECS" "$WORK/origin.port" "$WORK/origin.count" $((SMALL_KIB * 1024)) \
    <"$WORK/origin.in" &
ORIGIN_PID=$!
exec 3>"$WORK/origin.in"
for _ in $(seq 100); do [ -s "$WORK/origin.port" ] && break; sleep 0.1; done
ORIGIN_PORT=$(cat "$WORK/origin.port")
origin_count() { sleep 0.1; cat "$WORK/origin.count"; } # the origin rewrites it every 20 ms

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)); }
NGINX_PORT=$(free_port)
RT_PORT=$(free_port)
while [ "$RT_PORT" = "$NGINX_PORT" ]; do RT_PORT=$(free_port); done

mkdir -p "$WORK/logs" "$WORK/nginx-cache" "$WORK/temp" "$WORK/rt-cache"
cat >"$WORK/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/temp/body;
    proxy_temp_path $WORK/temp/proxy;
    fastcgi_temp_path $WORK/temp/fastcgi;
    uwsgi_temp_path $WORK/temp/uwsgi;
    scgi_temp_path $WORK/temp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=blobs:10m max_size=8g inactive=1h use_temp_path=off;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache blobs;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_lock_age 60s;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
CONF
"$NGINX" -p "$WORK/" -c "$WORK/nginx.conf"
NGINX_STARTED=1

"$RT" --quiet --cache-dir "$WORK/rt-cache" serve --listen "127.0.0.1:$RT_PORT" \
    --upstream "http://127.0.0.1:$ORIGIN_PORT" 2>"$WORK/logs/readthrough.log" &
RT_PID=$!

NGINX_URL="http://127.0.0.1:$NGINX_PORT"
RT_URL="http://127.0.0.1:$RT_PORT"
for url in "$NGINX_URL/small?k=up" "$RT_URL/-/health"; do
    for _ in $(seq 100); do curl --noproxy '*' -sf -o /dev/null "$url" && break; sleep 0.1; done
    curl --noproxy '*' -sf -o /dev/null "$url" || { echo "a server did not start ($url)" >&2; exit 1; }
done

# --- helpers ---------------------------------------------------------------------------
declare -A URL=([nginx]=$NGINX_URL [readthrough]=$RT_URL)
declare -A R # the results, by "measurement side"
BYTES=$((SIZE_MIB * 1024 * 1024))
SMALL_BYTES=$((SMALL_KIB * 1024))

alive() { # both servers still up, or a loud failure
    kill -0 "$RT_PID" 2>/dev/null || { echo "readthrough serve died; its log:" >&2; tail "$WORK/logs/readthrough.log" >&2; exit 1; }
    kill -0 "$(cat "$WORK/nginx.pid")" 2>/dev/null || { echo "nginx died; its log:" >&2; tail "$WORK/logs/error.log" >&2; exit 1; }
}
nginx_workers() { pgrep -P "$(cat "$WORK/nginx.pid")" -f 'worker process' || true; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
memory() { # after each step: the peak resident set so far, KiB, of each server
    R[mem_readthrough]=$(hwm_kib "$RT_PID")
    local sum=0 pid
    for pid in $(nginx_workers); do sum=$((sum + $(hwm_kib "$pid"))); done
    R[mem_nginx]=$sum
    # All of nginx: the cache loader exits after a minute, taking its VmHWM along, so
    # keep the largest sum seen.
    local all=$(( sum + $(hwm_kib "$(cat "$WORK/nginx.pid")") ))
    for pid in $(pgrep -P "$(cat "$WORK/nginx.pid")" -f 'cache' || true); do
        all=$(( all + $(hwm_kib "$pid") ))
    done
    if (( all > ${R[mem_nginx_all]:-0} )); then R[mem_nginx_all]=$all; fi
    echo "  peak RSS so far: readthrough serve $((R[mem_readthrough] / 1024)) MiB; nginx workers $((R[mem_nginx] / 1024)) MiB (all nginx processes $((R[mem_nginx_all] / 1024)) MiB)"
}
# median and max (ms) of column $1 (seconds) of file $2
med_max() {
    cut -d' ' -f"$1" "$2" | sort -g | awk '{ v[NR] = $1 * 1000 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "%.1f %.1f\n", m, v[NR] }'
}
curl_clients() { # URL N OUTFILE: N curls at once; each line: ttfb total bytes status
    local url=$1 n=$2 out=$3 pids=()
    : >"$out"
    for _ in $(seq "$n"); do
        curl --noproxy '*' -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n' "$url" >>"$out" &
        pids+=($!)
    done
    wait "${pids[@]}" # not a bare `wait`: the servers are children too
}
sides_in_turn() { # step number: both sides, the order swapped on odd steps
    if (( $1 % 2 )); then echo readthrough nginx; else echo nginx readthrough; fi
}
# an awk expression over its args, printed
calc() { awk "BEGIN { printf \"%s\", ($1) }"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(df -T "$WORK" | awk 'NR==2 {print $2}') at $WORK"
echo "servers: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$RT" --version 2>/dev/null || echo readthrough); client: curl $(curl --version | awk 'NR==1 {print $2}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')"
echo "origin: /blob ${SIZE_MIB} MiB paced over ~${FILL_SECS} s, /small ${SMALL_KIB} KiB; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %T') UTC"
echo
STEP=0

# --- 1. cold fan-out ---------------------------------------------------------------------
for n in $CLIENTS; do
    for side in $(sides_in_turn $STEP); do
        alive
        out="$WORK/cold-$n-$side"
        before=$(origin_count)
        curl_clients "${URL[$side]}/blob?k=cold-$n-$side" "$n" "$out"
        after=$(origin_count)
        read -r fb_med fb_max < <(med_max 1 "$out")
        read -r lb_med lb_max < <(med_max 2 "$out")
        bad=$(awk -v b="$BYTES" '$3 != b || $4 != 200' "$out" | wc -l)
        R[cold${n}_$side]="$fb_med $fb_max $lb_med $lb_max $((after - before)) $bad"
        echo "cold fan-out, $n clients, $side: first byte median $fb_med ms, max $fb_max ms; last byte median $lb_med ms, max $lb_max ms; origin requests $((after - before)); wrong bodies $bad"
    done
    memory
    STEP=$((STEP + 1))
done
# The large hits read each server's copy of the first cold key.
FIRST_N=$(echo "$CLIENTS" | awk '{print $1}')
large_url() { echo "${URL[$1]}/blob?k=cold-$FIRST_N-$1"; }

# --- 2. small hits -----------------------------------------------------------------------
for side in nginx readthrough; do # warm each server's copy of /small, then check it is one
    curl --noproxy '*' -sf -o /dev/null "${URL[$side]}/small?k=hit"
done
sleep 0.1; small_before=$(cat "$WORK/origin.count.small")
echo "nginx says: $(curl --noproxy '*' -s -D - -o /dev/null "$NGINX_URL/small?k=hit" | tr -d '\r' | grep -i '^x-cache-status' || echo 'no X-Cache-Status')"
for round in $(seq "$ROUNDS"); do
    for side in $(sides_in_turn $STEP); do
        alive
        out="$WORK/wrk-small-$round-$side"
        wrk --latency -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" "${URL[$side]}/small?k=hit" >"$out" 2>&1 || true
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        [ -n "$rps" ] || { echo "wrk failed against $side:" >&2; cat "$out" >&2; exit 1; }
        errs=$(awk '/Non-2xx|Socket errors/' "$out" | xargs)
        p99=$(awk '$1 == "99%" {print $2}' "$out")
        R[small_$side]="${R[small_$side]:-} $rps"
        echo "small hits, round $round, $side: $rps requests/s (p99 latency $p99)${errs:+; $errs}"
    done
    STEP=$((STEP + 1))
done
sleep 0.1; small_after=$(cat "$WORK/origin.count.small")
echo "origin requests for /small during the small-hit runs: $((small_after - small_before))"
memory

# --- 3. large hits -----------------------------------------------------------------------
for run in $(seq "$LARGE_RUNS"); do
    for side in $(sides_in_turn $STEP); do
        alive
        line=$(curl --noproxy '*' -s -o /dev/null -w '%{speed_download} %{size_download} %{http_code}' "$(large_url "$side")")
        read -r speed size code <<<"$line"
        [ "$size" = "$BYTES" ] && [ "$code" = 200 ] || echo "  large hit from $side: status $code, $size bytes (want $BYTES)"
        R[large_$side]="${R[large_$side]:-} $(calc "$speed / 1e6")"
    done
    STEP=$((STEP + 1))
done
for side in nginx readthrough; do
    echo "large hits, one curl at a time, $side (MB/s):${R[large_$side]}"
done
for side in $(sides_in_turn $STEP); do
    alive
    out="$WORK/wrk-large-$side"
    wrk -t1 -c"$LARGE_CONNS" -d"${LARGE_SECS}s" --timeout 60s "$(large_url "$side")" >"$out" 2>&1 || true
    # wrk prints Transfer/sec as e.g. 1.23GB (binary units): back to bytes, then MB.
    mbs=$(awk '/^Transfer\/sec:/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v);
        f = (u == "GB") ? 2^30 : (u == "MB") ? 2^20 : (u == "KB") ? 2^10 : 1; printf "%.0f", v * f / 1e6 }' "$out")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    [ -n "$mbs" ] || { echo "wrk failed against $side:" >&2; cat "$out" >&2; exit 1; }
    errs=$(awk '/Non-2xx|Socket errors/' "$out" | xargs)
    R[largewrk_$side]=$mbs
    echo "large hits, wrk $LARGE_CONNS connections ${LARGE_SECS} s, $side: $mbs MB/s ($reqs responses)${errs:+; $errs}"
done
STEP=$((STEP + 1))
memory
alive

# --- table ---------------------------------------------------------------------------------
best() { tr ' ' '\n' | grep . | sort -g | tail -1; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "| measurement | nginx proxy_cache_lock | readthrough serve | readthrough / nginx |"
echo "| --- | --- | --- | --- |"
for n in $CLIENTS; do
    read -r nfm nfx nlm nlx nreq nbad <<<"${R[cold${n}_nginx]}"
    read -r rfm rfx rlm rlx rreq rbad <<<"${R[cold${n}_readthrough]}"
    echo "| cold, $n clients: first byte, median / max (ms) | $nfm / $nfx | $rfm / $rfx | $(calc "$nfm / ($rfm > 0 ? $rfm : 0.001)" | xargs printf '%.0f')x earlier (median) |"
    echo "| cold, $n clients: last byte, median / max (ms) | $nlm / $nlx | $rlm / $rlx | $(calc "$rlm / $nlm" | xargs printf '%.2f') (median) |"
    echo "| cold, $n clients: origin requests; wrong bodies | $nreq; $nbad | $rreq; $rbad | |"
done
ns=$(median <<<"${R[small_nginx]}"); rs=$(median <<<"${R[small_readthrough]}")
echo "| small hits (${SMALL_KIB} KiB), wrk -t$WRK_THREADS -c$WRK_CONNS ${WRK_SECS} s: requests/s, median of $ROUNDS (each) | $ns (${R[small_nginx]# }) | $rs (${R[small_readthrough]# }) | $(calc "$rs / $ns" | xargs printf '%.2f') |"
nl=$(median <<<"${R[large_nginx]}"); rl=$(median <<<"${R[large_readthrough]}")
nb=$(best <<<"${R[large_nginx]}"); rb=$(best <<<"${R[large_readthrough]}")
echo "| large hits (${SIZE_MIB} MiB), one curl: MB/s, median / best of $LARGE_RUNS | $(printf '%.0f / %.0f' "$nl" "$nb") | $(printf '%.0f / %.0f' "$rl" "$rb") | $(calc "$rl / $nl" | xargs printf '%.2f') (median) |"
echo "| large hits, wrk -c$LARGE_CONNS ${LARGE_SECS} s: MB/s | ${R[largewrk_nginx]} | ${R[largewrk_readthrough]} | $(calc "${R[largewrk_readthrough]} / ${R[largewrk_nginx]}" | xargs printf '%.2f') |"
echo "| peak RSS over the run (MiB) | $(calc "${R[mem_nginx]} / 1024" | xargs printf '%.1f') (workers summed; $(calc "${R[mem_nginx_all]} / 1024" | xargs printf '%.1f') all processes) | $(calc "${R[mem_readthrough]} / 1024" | xargs printf '%.1f') | $(calc "${R[mem_readthrough]} / ${R[mem_nginx]}" | xargs printf '%.2f') |"
echo
echo "goals (issue 18):"
for n in $CLIENTS; do
    read -r nfm _ <<<"${R[cold${n}_nginx]}"; read -r rfm _ <<<"${R[cold${n}_readthrough]}"
    x=$(calc "$nfm / ($rfm > 0 ? $rfm : 0.001)")
    echo "  first byte, cold, $n clients: $(printf '%.0f' "$x")x earlier than nginx (median); goal >= 100x: $(calc "$x >= 100 ? \"met\" : \"missed\"")"
done
echo "  small-hit requests/s: $(calc "$rs / $ns" | xargs printf '%.2f') of nginx's; goal >= 1: $(calc "$rs >= $ns ? \"met\" : \"missed\"")"
echo "  large-hit throughput (one curl, median): $(calc "$rl / $nl" | xargs printf '%.2f') of nginx's; goal >= 0.9: $(calc "$rl >= 0.9 * $nl ? \"met\" : \"missed\"")"
echo "  large-hit throughput (wrk -c$LARGE_CONNS): $(calc "${R[largewrk_readthrough]} / ${R[largewrk_nginx]}" | xargs printf '%.2f') of nginx's; goal >= 0.9: $(calc "${R[largewrk_readthrough]} >= 0.9 * ${R[largewrk_nginx]} ? \"met\" : \"missed\"")"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %T') UTC"
