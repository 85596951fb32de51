#!/usr/bin/env bash
# The readthrough CLI against curl, whole processes, on loopback: nginx serves a
# static folder (one SIZE_MIB MiB file and SMALL small files of 1 to 4 KiB), and each
# pair of commands runs alternately, RUNS times, on a fresh cache each time:
#   1. cold `readthrough path URL` (each --durability) against `curl -s -o FILE URL`;
#   2. `readthrough warm --jobs 16` of the SMALL small files against
#      `xargs -P 16 -n 50 curl --remote-name-all` of the same list (50 URLs per curl
#      process, kept alive), each file to its own path.
# Prints each command's median wall time and the ratio to curl's.
#
# Usage: benches/cli.sh   (env: SIZE_MIB=256 SMALL=5000 RUNS=5)
# Needs nginx and curl (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-256}
SMALL=${SMALL:-5000}
RUNS=${RUNS:-5}

for tool in nginx curl; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light curl >/dev/null; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --bin readthrough
RT=$PWD/target/release/readthrough

WORK=$(mktemp -d /tmp/readthrough-cli.XXXXXX)
cleanup() {
    [ -f "$WORK/nginx.pid" ] && "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -s stop 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www/small" "$WORK/logs"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/www/big.bin"
python3 - "$WORK/www/small" "$SMALL" <<'PY'
import os, random, sys
folder, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(n):
    with open(os.path.join(folder, f"{i}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 4096)))
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    server { listen 127.0.0.1:$PORT; root $WORK/www; }
}
CONF
# nginx's workers run as another user: let them read the folder.
chmod 755 "$WORK" && chmod -R a+rX "$WORK/www"
"$NGINX" -p "$WORK/" -c "$WORK/nginx.conf"
BASE=http://127.0.0.1:$PORT
WWW_BIG=$WORK/www/big.bin
for _ in $(seq 50); do curl -sf -o /dev/null "$BASE/small/0.bin" && break; sleep 0.1; done
seq 0 $((SMALL - 1)) | sed "s|.*|$BASE/small/&.bin|" >"$WORK/urls"

# Wall seconds of one run of "$@".
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

# Each starts from nothing; the removal of the last run's files is not timed.
fresh() { rm -rf "$WORK/c" "$WORK/out" "$WORK/out.bin"; mkdir "$WORK/out"; sync; }
cold_rt() { "$RT" --cache-dir "$WORK/c" --durability "$1" -q path "$BASE/big.bin"; }
cold_curl() { curl -sf -o "$WORK/out.bin" "$BASE/big.bin"; }
warm_rt() { "$RT" --cache-dir "$WORK/c" --durability "$1" -q warm --jobs 16 --from "$WORK/urls"; }
warm_curl() {
    xargs -P 16 -n 50 curl -sf --output-dir "$WORK/out" --remote-name-all <"$WORK/urls"
}

# Each command once, checked, before anything is timed.
fail() { echo "benches/cli.sh: $1" >&2; exit 1; }
fresh && cold_curl && cmp -s "$WORK/out.bin" "$WWW_BIG" || fail "curl -o got the wrong bytes"
fresh && cold_rt background >"$WORK/path" && cmp -s "$(cat "$WORK/path")" "$WWW_BIG" || fail "readthrough path got the wrong bytes"
fresh && warm_curl && [ "$(ls "$WORK/out" | wc -l)" = "$SMALL" ] || fail "curl missed small files"
fresh && warm_rt background || fail "readthrough warm failed"

echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %T') UTC"
declare -A T
for run in $(seq "$RUNS"); do
    fresh && T[cold_curl]+="$(timed cold_curl) "
    for mode in background fsync; do fresh && T[cold_$mode]+="$(timed cold_rt $mode) "; done
    fresh && T[warm_curl]+="$(timed warm_curl) "
    for mode in background fsync; do fresh && T[warm_$mode]+="$(timed warm_rt $mode) "; done
done
m() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
ratio() { echo "$(m "$1") / $(m "$2")" | bc -l | xargs printf "%.2f"; }
echo "cold path of $SIZE_MIB MiB, median of $RUNS (s): curl -o $(m cold_curl); readthrough background $(m cold_background) ($(ratio cold_background cold_curl)x); fsync $(m cold_fsync) ($(ratio cold_fsync cold_curl)x)"
echo "warm of $SMALL small files, --jobs 16 / xargs -P 16, median of $RUNS (s): curl $(m warm_curl); readthrough background $(m warm_background) ($(ratio warm_background warm_curl)x); fsync $(m warm_fsync) ($(ratio warm_fsync warm_curl)x)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
