#!/usr/bin/env bash
# Creates (once) and caches the Python venv used by the gateway's SDK interop
# tests: `.venv-interop/` at the repository root with a2a-sdk[http-server,signing]
# 1.3.0 and uvicorn from PyPI. Idempotent: when the venv already holds the
# pinned packages it exits at once, so tests may call it on every run; when
# the pins change (the stamp differs), it installs them into the venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CONVERGIO_INTEROP_VENV:-$root/.venv-interop}"
stamp="$venv/.convergio-interop-ready"
pins=("a2a-sdk[http-server,signing]==1.3.0" "uvicorn")

ready() {
  [[ -x "$venv/bin/python" && -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(printf '%s\n' "${pins[@]}")" ]]
}

if ready; then
  exit 0
fi

# Concurrent test runs wait for the one that is creating the venv.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ready; then
  exit 0
fi

python="${PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
"$venv/bin/python" -c "import a2a, uvicorn, starlette, sse_starlette, jwt"
printf '%s\n' "${pins[@]}" > "$stamp"
