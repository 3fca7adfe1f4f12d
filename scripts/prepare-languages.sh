#!/usr/bin/env bash
# What building and testing handlers in TypeScript and Python needs, pinned:
# the npm workspace of package-lock.json, and a virtualenv with the Python
# packages of tests/requirements.txt. Sourced from the repository root by
# prepare.sh (tests, benchmarks) and demo.sh; safe to run again, and quick
# when nothing changed.
set -euo pipefail

# The versions the SDKs need: tomllib (Python 3.11), rolldown (Node 20.19).
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Python 3.11 or newer is needed; python3 is $(python3 --version 2>&1)" >&2
    exit 1
}
command -v node >/dev/null || { echo "Node.js is missing: install Node.js 20.19 or newer" >&2; exit 1; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' || {
    echo "Node.js 20.19 or newer is needed; node is $(node --version)" >&2
    exit 1
}

# The Python packages the tests need (a CloudEvents SDK as an HTTP client;
# pytest and componentize-py for the Python SDK and its example), pinned in
# tests/requirements.txt, in a virtualenv under the target directory (tests
# and tests/build.rs find it there: sighost_tests::test_python).
venv="${CARGO_TARGET_DIR:-target}/test-venv"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    python3 -m venv --clear "$venv" || {
        echo "python3 cannot make a virtualenv (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi
if ! cmp -s tests/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/requirements.txt"
fi

# The npm workspace (the JavaScript SDK and the TypeScript example), pinned by
# package-lock.json: the build tools (componentize-js, jco) come from there.
# `npm ci` again only when the lock file changed.
command -v npm >/dev/null || { echo "npm is missing: install it with Node.js" >&2; exit 1; }
if ! cmp -s package-lock.json node_modules/.sighost-installed-lock 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.sighost-installed-lock
fi
