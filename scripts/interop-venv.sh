#!/usr/bin/env bash
# The Python venv of the gateway's SDK interop tests: `.venv-interop/` at the
# repository root with a2a-sdk[http-server,signing,grpc] 1.3.0 and uvicorn
# from PyPI (scripts/python-venv.sh: created once, reused while the pins hold).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$root/scripts/python-venv.sh" "${CONVERGIO_INTEROP_VENV:-$root/.venv-interop}" \
  'bin/python -c "import a2a, uvicorn, starlette, sse_starlette, jwt, grpc"' \
  "a2a-sdk[http-server,signing,grpc]==1.3.0" "uvicorn"
