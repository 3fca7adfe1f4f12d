#!/usr/bin/env bash
# Runs every test: unit tests, the guest SDK, the example handlers, and the
# end-to-end suites that build real wasm components from source, run the real
# `sighost` binary, and use a real SQLite file and a real PostgreSQL server.
#
# On a fresh machine it first installs the wasm32-wasip2 target and starts
# the local PostgreSQL server if it is not running (scripts/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh

cargo test --workspace "$@"
