#!/usr/bin/env bash
# What the tests and benchmarks need on a fresh machine: the wasm32-wasip2
# target, and the local PostgreSQL server running on 127.0.0.1:5432.
# Sourced by test.sh and bench.sh; safe to run again.
set -euo pipefail

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
