#!/usr/bin/env bash
# The Python venv of the API contract test (cli/tests/openapi.rs):
# `.venv-schemathesis/` at the repository root with schemathesis from PyPI,
# pinned (scripts/python-venv.sh: created once, reused while the pins hold).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$root/scripts/python-venv.sh" "${CONVERGIO_SCHEMATHESIS_VENV:-$root/.venv-schemathesis}" \
  'bin/schemathesis --version' \
  "schemathesis==4.32.5"
