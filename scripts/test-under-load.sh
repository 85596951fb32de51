#!/usr/bin/env bash
# Runs the whole suite (`cargo test --all-features`) while `stress-ng --cpu 2 --io 1`
# loads the machine, RUNS times in a row (default 5), and stops at the first failure,
# saying which run failed and which tests. The load is stopped at the end whatever
# happens (success, failure, Ctrl-C).
#
#   scripts/test-under-load.sh            # 5 runs
#   RUNS=10 scripts/test-under-load.sh    # 10 runs
#   scripts/test-under-load.sh 3 -- --test multiprocess   # 3 runs of one test file
#
# Extra arguments after `--` go to `cargo test --all-features`. It installs stress-ng
# with apt-get when it is missing (as root), like .ci/run installs what CI needs.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-5}
if [[ $# -gt 0 && $1 != -- ]]; then
  runs=$1
  shift
fi
[[ ${1:-} == -- ]] && shift

if ! command -v stress-ng >/dev/null 2>&1; then
  echo "== installing stress-ng"
  if [[ $(id -u) -ne 0 ]]; then
    echo "stress-ng is missing and this is not root: install it (apt-get install stress-ng)" >&2
    exit 2
  fi
  apt-get install -y -qq stress-ng >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq stress-ng >/dev/null; }
fi

# Build first, unloaded, so that the runs measure the tests and not the compiler.
echo "== building the tests"
cargo test --all-features --no-run "$@"

stress_pid=
stop_load() {
  if [[ -n $stress_pid ]]; then
    # stress-ng's own group of workers: stop the parent, which stops its workers.
    kill -TERM "$stress_pid" 2>/dev/null || true
    wait "$stress_pid" 2>/dev/null || true
    stress_pid=
  fi
}
trap stop_load EXIT
trap 'exit 130' INT TERM

echo "== load: stress-ng --cpu 2 --io 1"
stress-ng --cpu 2 --io 1 --timeout 0 --quiet &
stress_pid=$!

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/test-under-load.XXXXXX")
for run in $(seq 1 "$runs"); do
  log="$log_dir/run-$run.log"
  echo "== run $run of $runs (load average: $(cut -d' ' -f1-3 /proc/loadavg)); log: $log"
  start=$(date +%s)
  if cargo test --all-features "$@" >"$log" 2>&1; then
    echo "   run $run passed in $(($(date +%s) - start)) s"
  else
    echo "   run $run FAILED after $(($(date +%s) - start)) s; failing tests:"
    grep -E '^test .* FAILED$|^    [a-z_:]+$|^error: test failed' "$log" | sed 's/^/   /' || true
    echo "   (the whole output is in $log)"
    exit 1
  fi
done
echo "== all $runs runs passed under load (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
