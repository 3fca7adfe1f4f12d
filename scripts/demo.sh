#!/usr/bin/env bash
# The main job, end to end: build the example handlers and the host, start
# `sighost run` on a fresh embedded (SQLite) store, emit sample signals for
# two tenants, and show the deliveries and the directives they caused.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

echo "==> building the host and the example handlers"
cargo build --release -p sighost
handlers=(forum-summarizer audit-trail signal-echo)
packages=()
for name in "${handlers[@]}"; do packages+=(-p "$name"); done
cargo build --profile wasm --target wasm32-wasip2 "${packages[@]}"
for name in "${handlers[@]}"; do
    cp "target/wasm32-wasip2/wasm/${name//-/_}.wasm" "handlers/$name.wasm"
done
echo "==> building the TypeScript and Python ports of forum-summarizer with their SDKs"
source scripts/prepare-languages.sh
npm run --silent build:examples
PYTHONPATH=sdk/python "${CARGO_TARGET_DIR:-target}/test-venv/bin/python" \
    -m sighost_handler.build handlers/forum-summarizer-py -o handlers/forum-summarizer-py.wasm

sighost=target/release/sighost
data=$(mktemp -d "${TMPDIR:-/tmp}/sighost-demo.XXXXXX")
export SIGHOST_DATA_DIR="$data"
echo "==> data directory: $data"

"$sighost" check handlers/forum-summarizer.wasm
# The first check compiles the 12 MB JavaScript component (seconds); the host
# then finds the compiled code in the data directory's cache.
"$sighost" check handlers/forum-summarizer-ts.wasm

echo "==> tenants: org_acme has the forum package and auto-summaries on; org_beta has neither"
echo "    (the Rust, TypeScript and Python forum summarizers all serve the forum package, and ask"
echo "    for the same directive under the same key: the store keeps it once per thread)"
"$sighost" tenants create org_acme --settings '{"auto_summaries": true}' >/dev/null
"$sighost" tenants install org_acme forum >/dev/null
"$sighost" tenants create org_beta >/dev/null
"$sighost" tenants list

echo "==> starting sighost run (directives executed by the log executor into $data/directives.jsonl)"
"$sighost" run --listen "" --handlers handlers --directive-log "$data/directives.jsonl" 2>"$data/sighost.log" &
host=$!
trap 'kill -TERM $host 2>/dev/null || true' EXIT

echo "==> waiting for the host to register its handlers (emits go to what the hosts registered)"
registered=
# Five handlers; the first load of the JavaScript and Python ones compiles them (seconds).
for _ in $(seq 1 1200); do
    if [ "$("$sighost" handlers --json | grep -c '"digest":"')" -ge 5 ]; then registered=1; break; fi
    sleep 0.1
done
[ -n "$registered" ] || { echo "the host did not register its handlers; its log:" >&2; cat "$data/sighost.log" >&2; exit 1; }
"$sighost" handlers

echo "==> emitting signals"
"$sighost" emit --tenant org_acme forum.thread.created \
    '{"thread_id": "t_1", "title": "Welcome to the forum"}' --actor user:u_42 >/dev/null
"$sighost" emit --tenant org_beta forum.thread.created \
    '{"thread_id": "t_9", "title": "No summaries here"}' >/dev/null
"$sighost" emit --tenant org_acme echo.ping '{"hello": "world"}' >/dev/null
# The same dedupe key twice: the second emit returns the existing signal.
"$sighost" emit --tenant org_acme forum.thread.created \
    '{"thread_id": "t_2", "title": "Twice?"}' --dedupe-key import-2 >/dev/null
"$sighost" emit --tenant org_acme forum.thread.created \
    '{"thread_id": "t_2", "title": "Twice?"}' --dedupe-key import-2 | grep -o '"status":"[a-z]*"'

echo "==> waiting for every delivery and directive to finish"
for _ in $(seq 1 100); do
    status=$("$sighost" status --json)
    if ! grep -qE '"(available|running|retryable|requested)"' <<<"$status"; then break; fi
    sleep 0.1
done

echo "==> signals"
"$sighost" signals
echo "==> deliveries (one per signal and subscribed handler; org_beta gets no forum-summarizer run)"
"$sighost" deliveries
echo "==> directives the handlers requested"
"$sighost" directives
echo "==> directives as executed (the log executor's JSON lines)"
cat "$data/directives.jsonl"
echo "==> status"
"$sighost" status

kill -TERM $host
wait $host || true
trap - EXIT
echo "==> done; the store is in $data (sighost --data-dir $data status)"
