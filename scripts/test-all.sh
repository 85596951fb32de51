#!/usr/bin/env bash
# All the tests: the Rust crate's (`cargo test --all-features`: unit, integration,
# doctests) and then the Python package's (pytest in python/tests). For the Python ones
# it makes a venv in python/target/venv on first use, with maturin and pytest from
# PyPI, builds the package into it (`maturin develop`, a debug build) and runs pytest
# with the `readthrough` binary the Rust tests built, so the test of the command-line
# tool and Python in one fill must run.
#
#   scripts/test-all.sh                   # everything
#   scripts/test-all.sh -k coalescing     # everything Rust, the matching Python tests
#
# Arguments go to pytest. Needs a Rust toolchain and python3 (3.9 or later) with venv.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --all-features"
cargo test --all-features

venv=$PWD/python/target/venv
if [[ ! -x $venv/bin/maturin || ! -x $venv/bin/pytest ]]; then
  echo "== a venv for the Python tests ($venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'maturin>=1.5,<2' pytest
fi

echo "== the Python package (maturin develop) and its tests"
(cd python && VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH maturin develop -q)
# Each wait in the tests is bounded; the timeout turns a hang of the whole process (a
# GIL that a call failed to release stops the test's own HTTP server too) into a failure.
READTHROUGH_CLI=$PWD/target/debug/readthrough READTHROUGH_REQUIRE_CLI=1 \
  timeout 1200 "$venv/bin/python" -m pytest -q python/tests "$@"
