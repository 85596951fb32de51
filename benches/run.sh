#!/usr/bin/env bash
# Reproduces the README's Performance table: runs every benchmark and the nginx
# comparison, then prints the table (benches/report.py) with each figure, its baseline
# from the same run, the ratio and the target.
#
# Needs a Rust toolchain (1.89 or later, e.g. from rustup) on Linux. Installs with
# apt-get what else it needs (curl, nginx, python3) when missing; run as root there.
# Outputs go to target/bench-results/ (one .txt per bench); criterion's own reports to
# target/criterion/. Takes about 15 minutes on 2 cores and needs ~10 GiB free disk for a
# while (the 1M-entry scale cache; READTHROUGH_SCALE_ENTRIES=100000 for ~1 GiB).
#
#   benches/run.sh              # everything
#   benches/run.sh hit miss     # some benches (hit miss coalesce multiprocess memory
#                               # scale nginx), then the table from what is there
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="hit miss coalesce multiprocess memory scale nginx"
WHICH=${*:-$ALL}
OUT=target/bench-results
mkdir -p "$OUT"

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
PATH="$PATH:/usr/sbin:/sbin" command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        apt-get install -y -qq "${missing[@]/nginx-light/nginx}" >/dev/null
fi
command -v cargo >/dev/null || { echo "run.sh: needs cargo (Rust 1.89+, e.g. from rustup)" >&2; exit 1; }

{
    echo "date: $(date -u '+%F %H:%M UTC')"
    echo "cpu: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "tmp file system: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2 " on " $1}')"
    echo "kernel: $(uname -r); $(rustc --version)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

cargo bench --no-run --quiet 2>&1 | grep -v '^ *Executable' || true
for bench in $WHICH; do
    echo
    echo "== $bench (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    if [ "$bench" = nginx ]; then
        bash benches/peers/nginx.sh 2>&1 | tee "$OUT/nginx.txt"
    else
        cargo bench --quiet --bench "$bench" 2>&1 |
            grep -v -E '^\s*$|Gnuplot|^Benchmarking .*: (Warming|Collecting|Analyzing)' |
            tee "$OUT/$bench.txt"
    fi
done

echo
python3 benches/report.py "$OUT"
