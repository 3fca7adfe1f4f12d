#!/usr/bin/env bash
# What the tests and benchmarks need on a fresh machine: the wasm32-wasip2
# target, a PostgreSQL server, and the pinned node and Python packages. Unless SIGHOST_TEST_POSTGRES names a
# server of your own, that is the local one on 127.0.0.1:5432, started here
# if it is not running. Sourced by test.sh and bench.sh; safe to run again.
set -euo pipefail

rustup target add wasm32-wasip2

if [ -z "${SIGHOST_TEST_POSTGRES:-}" ] && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    cluster="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$cluster" ] || { echo "PostgreSQL is not installed (no /etc/postgresql); install it or set SIGHOST_TEST_POSTGRES" >&2; exit 1; }
    echo "starting PostgreSQL $cluster"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 1
    done
    pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

# The pinned node and Python packages (the SDKs' build and test tools).
source scripts/prepare-languages.sh
