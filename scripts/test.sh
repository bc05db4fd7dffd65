#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# It starts what the tests need (PostgreSQL, the Python venv with the A2A SDK
# for interop peers), checks formatting, lints, and runs every test of the
# workspace against real SQLite, PostgreSQL, sockets and SDK peers.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
export CONVERGIO_TEST_POSTGRES_URL="${CONVERGIO_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

if [ -x scripts/interop-venv.sh ]; then
  scripts/interop-venv.sh
fi

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
