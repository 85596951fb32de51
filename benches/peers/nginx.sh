#!/usr/bin/env bash
# readthrough against nginx as a caching reverse proxy, in one run, on loopback.
#
# One throttled origin (benches/peer_origin.rs: SIZE_MIB MiB paced over FILL_SECS
# seconds, counting its requests) sits behind both:
#   * nginx with proxy_cache and proxy_cache_lock on (one upstream fetch per key; the
#     other clients wait for the whole object to be cached), CLIENTS curl clients;
#   * readthrough: CLIENTS processes sharing one cache directory (the multiprocess
#     bench's `clients` mode: HttpOrigin, each process timing its own read), and the
#     readthrough CLI (`readthrough get URL`) as CLIENTS processes, total time only.
# Each side gets a cold key (a fresh query string). Reported per side: origin requests,
# time to first byte and to last byte over the clients (median, max), then hit
# throughput (one client reading the now-cached blob, and CLIENTS at once).
#
# Usage: benches/peers/nginx.sh        (env: CLIENTS=20 SIZE_MIB=256 FILL_SECS=2)
# Installs nginx (Debian's nginx-light, else nginx) and curl with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLIENTS=${CLIENTS:-20}
SIZE_MIB=${SIZE_MIB:-256}
FILL_SECS=${FILL_SECS:-2}
HIT_RUNS=${HIT_RUNS:-3}

need() { command -v "$1" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need curl; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    need curl || apt-get install -y -qq curl >/dev/null
    need nginx || apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(PATH="$PATH:/usr/sbin:/sbin" command -v nginx)

# Build the CLI and the two bench helpers; find their executables.
cargo build --release --quiet --bin readthrough
exe_of() {
    cargo bench --bench "$1" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1
}
ORIGIN=$(exe_of peer_origin)
MULTI=$(exe_of multiprocess)
CLI=target/release/readthrough
[ -x "$ORIGIN" ] && [ -x "$MULTI" ] && [ -x "$CLI" ] || { echo "build failed" >&2; exit 1; }

WORK=$(mktemp -d /tmp/readthrough-nginx.XXXXXX)
ORIGIN_PID= ; NGINX_STARTED=
cleanup() {
    [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -s stop 2>/dev/null || true
    [ -n "$ORIGIN_PID" ] && { exec 3>&- ; wait "$ORIGIN_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

# The origin runs until its stdin (fd 3 here) closes.
mkfifo "$WORK/origin.in"
"$ORIGIN" serve "$SIZE_MIB" "$FILL_SECS" "$WORK/origin.port" "$WORK/origin.count" <"$WORK/origin.in" &
ORIGIN_PID=$!
exec 3>"$WORK/origin.in"
for _ in $(seq 100); do [ -s "$WORK/origin.port" ] && break; sleep 0.1; done
ORIGIN_PORT=$(cat "$WORK/origin.port")
origin_count() { sleep 0.1; cat "$WORK/origin.count"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)); }
NGINX_PORT=$(free_port)
mkdir -p "$WORK/logs" "$WORK/cache" "$WORK/temp"
cat >"$WORK/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 1024; }
http {
    log_format timing '\$request_uri \$upstream_cache_status \$request_time \$body_bytes_sent';
    access_log $WORK/logs/access.log timing;
    client_body_temp_path $WORK/temp/body;
    proxy_temp_path $WORK/temp/proxy;
    fastcgi_temp_path $WORK/temp/fastcgi;
    uwsgi_temp_path $WORK/temp/uwsgi;
    scgi_temp_path $WORK/temp/scgi;
    sendfile on;
    tcp_nopush on;
    proxy_cache_path $WORK/cache levels=1:2 keys_zone=blobs:10m max_size=8g inactive=1h use_temp_path=off;
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
        }
    }
}
CONF
"$NGINX" -p "$WORK/" -c "$WORK/nginx.conf"
NGINX_STARTED=1

# median and max of column 1 of stdin, in ms (input in seconds unless $2 says ms).
stats() {
    sort -g | awk -v scale="${1:-1000}" '{ v[NR] = $1 * scale } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "median %.0f ms, max %.0f ms", m, v[NR] }'
}
curl_clients() { # URL N OUTFILE: N curls at once; each line: ttfb total bytes speed
    local url=$1 n=$2 out=$3
    : >"$out"
    local pids=()
    for _ in $(seq "$n"); do
        curl --noproxy '*' -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download} %{speed_download}\n' "$url" >>"$out" &
        pids+=($!)
    done
    wait "${pids[@]}" # not a bare `wait`: the origin is a child too
}
json() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print($1)"; }

BYTES=$((SIZE_MIB * 1024 * 1024))
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(df -T "$WORK" | awk 'NR==2 {print $2}') at $WORK; $("$NGINX" -v 2>&1 | sed 's/.*: //'); $(date -u +%F)"
echo "origin: ${SIZE_MIB} MiB, paced over ~${FILL_SECS} s (1 MiB pieces); ${CLIENTS} concurrent clients per cold key"
echo

# --- nginx: cold key -------------------------------------------------------------
before=$(origin_count)
curl_clients "http://127.0.0.1:$NGINX_PORT/blob?side=nginx" "$CLIENTS" "$WORK/nginx.cold"
after=$(origin_count)
short=$(awk -v b="$BYTES" '$3 != b' "$WORK/nginx.cold" | wc -l)
echo "nginx proxy_cache_lock, cold: origin requests $((after - before)); short bodies $short"
echo "  time to first byte: $(cut -d' ' -f1 "$WORK/nginx.cold" | stats)"
echo "  time to last byte:  $(cut -d' ' -f2 "$WORK/nginx.cold" | stats)"
echo "  cache status: $(awk '/side=nginx/ {print $2}' "$WORK/logs/access.log" | sort | uniq -c | xargs)"
NGINX_COLD_REQ=$((after - before))

# --- readthrough: cold key, CLIENTS processes (bench binary) ------------------------
RT_DIR="$WORK/rt-cache"
mkdir -p "$RT_DIR"
before=$(origin_count)
"$MULTI" clients "http://127.0.0.1:$ORIGIN_PORT/blob?side=readthrough" "$CLIENTS" "$RT_DIR" >"$WORK/rt.cold"
after=$(origin_count)
echo "readthrough, cold ($CLIENTS processes, one cache dir): origin requests $((after - before)); kinds: $(json '" ".join(sorted(d["kinds"]))' <"$WORK/rt.cold" | tr ' ' '\n' | uniq -c | xargs)"
echo "  time to first byte: $(json 'd["first_byte_median_ms"], d["first_byte_max_ms"]' <"$WORK/rt.cold" | tr -d '(),' | awk '{printf "median %.0f ms, max %.0f ms", $1, $2}')"
echo "  time to last byte:  $(json 'd["last_byte_median_ms"], d["last_byte_max_ms"]' <"$WORK/rt.cold" | tr -d '(),' | awk '{printf "median %.0f ms, max %.0f ms", $1, $2}')"
echo "  followers' first byte after the leader's: $(json 'd["follower_first_lag_median_ms"], d["follower_first_lag_max_ms"]' <"$WORK/rt.cold" | tr -d '(),' | awk '{printf "median %.1f ms, max %.1f ms", $1, $2}')"
RT_COLD_REQ=$((after - before))

# --- readthrough CLI: cold key, CLIENTS processes, total time each -------------------
CLI_DIR="$WORK/cli-cache"
before=$(origin_count)
: >"$WORK/cli.cold"
pids=()
for _ in $(seq "$CLIENTS"); do
    ( s=$(date +%s%N); "$CLI" -q --cache-dir "$CLI_DIR" get "http://127.0.0.1:$ORIGIN_PORT/blob?side=cli" >/dev/null
      e=$(date +%s%N); echo "$(( (e - s) / 1000 ))e-6" >>"$WORK/cli.cold" ) &
    pids+=($!)
done
wait "${pids[@]}"
after=$(origin_count)
echo "readthrough CLI (\`readthrough get URL\`, durable), cold: origin requests $((after - before))"
echo "  time to last byte:  $(stats <"$WORK/cli.cold")"
echo

# --- hits ----------------------------------------------------------------------------
echo "hit throughput (the blob now cached; MiB/s; one client, best of $HIT_RUNS):"
best=0
for _ in $(seq "$HIT_RUNS"); do
    s=$(curl --noproxy '*' -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$NGINX_PORT/blob?side=nginx")
    best=$(awk -v a="$best" -v b="$s" 'BEGIN { print (b > a) ? b : a }')
done
echo "  nginx (curl over loopback, sendfile):   $(awk -v s="$best" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s"
best=0
for _ in $(seq "$HIT_RUNS"); do
    s=$(date +%s%N); "$CLI" -q --cache-dir "$CLI_DIR" get "http://127.0.0.1:$ORIGIN_PORT/blob?side=cli" >/dev/null; e=$(date +%s%N)
    best=$(awk -v a="$best" -v ns=$((e - s)) -v b="$BYTES" 'BEGIN { r = b / (ns / 1e9); print (r > a) ? r : a }')
done
echo "  readthrough CLI (get URL > /dev/null):  $(awk -v s="$best" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s (process start included)"
curl_clients "http://127.0.0.1:$NGINX_PORT/blob?side=nginx" "$CLIENTS" "$WORK/nginx.hit"
echo "  nginx, $CLIENTS clients at once: time to last byte $(cut -d' ' -f2 "$WORK/nginx.hit" | stats); aggregate $(awk -v b="$BYTES" '{ if ($2 > m) m = $2 } END { printf "%.0f", NR * b / m / 1048576 }' "$WORK/nginx.hit") MiB/s"
"$MULTI" clients "http://127.0.0.1:$ORIGIN_PORT/blob?side=readthrough" "$CLIENTS" "$RT_DIR" >"$WORK/rt.hit"
echo "  readthrough, $CLIENTS processes at once: time to last byte $(json 'd["last_byte_median_ms"], d["last_byte_max_ms"]' <"$WORK/rt.hit" | tr -d '(),' | awk '{printf "median %.0f ms, max %.0f ms", $1, $2}'); aggregate $(json "${CLIENTS} * ${BYTES} / (d['last_byte_max_ms'] / 1000) / 1048576" <"$WORK/rt.hit" | awk '{printf "%.0f", $1}') MiB/s; kinds: $(json '" ".join(sorted(set(d["kinds"])))' <"$WORK/rt.hit")"
echo
echo "SUMMARY nginx origin_requests=$NGINX_COLD_REQ readthrough origin_requests=$RT_COLD_REQ"
