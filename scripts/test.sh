#!/usr/bin/env bash
# Runs every test: unit tests, the guest SDK, the example handlers, and the
# end-to-end suites that build real wasm components from source, run the real
# `sighost` binary, and use a real SQLite file and a real PostgreSQL server.
#
# On a fresh machine it first installs the wasm32-wasip2 target and starts
# the local PostgreSQL server if it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 1
    done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

cargo test --workspace "$@"
