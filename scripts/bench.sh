#!/usr/bin/env bash
# Runs the benchmark suite and rewrites BENCHMARKS.md: sighost beside bare
# wasmtime, native Rust, and apalis on SQLite and PostgreSQL, each measured in
# this run on this machine. Progress goes to stderr.
#
#   ./scripts/bench.sh                  # every section, 3 runs per figure
#   ./scripts/bench.sh --runs 1 sqlite  # some sections: printed, not written
#
# Like test.sh it first installs the wasm target and starts the local
# PostgreSQL server if they are missing (scripts/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

cargo bench -p sighost-tests --bench suite -- "$@"
