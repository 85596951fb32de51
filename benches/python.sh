#!/usr/bin/env bash
# The Python package's benchmark (benches/python/bench.py): builds a release build of
# the package into a venv of its own (python/target/bench-venv, with maturin and
# filelock from PyPI), then runs the benchmark. Arguments go to bench.py (--rounds,
# --size-mib, --cold-mib, --rate-mib, --processes). Needs a Rust toolchain and
# python3 (3.9 or later) with venv.
#
#   benches/python.sh
#   benches/python.sh --rounds 9
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$PWD/python/target/bench-venv
if [[ ! -x $venv/bin/maturin ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'maturin>=1.5,<2' filelock
fi
(cd python && VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH maturin develop -q --release)
echo "date: $(date -u '+%F %H:%M UTC'); $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$venv/bin/python" benches/python/bench.py "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
