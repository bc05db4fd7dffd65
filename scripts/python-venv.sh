#!/usr/bin/env bash
# Creates (once) and caches a pinned Python venv from PyPI, for the test
# suites that need one (interop-venv.sh, schemathesis-venv.sh call it).
# Usage: python-venv.sh VENV_DIR CHECK_COMMAND PIN...
# Idempotent: when VENV_DIR already holds exactly the pins (its stamp file
# says so) it exits at once, so tests may call it on every run; when the pins
# change it installs them. Concurrent callers wait for the one installing.
# CHECK_COMMAND runs in the venv after an install (`bin/...` relative to it).
set -euo pipefail

venv="$1"
check="$2"
shift 2
pins=("$@")
stamp="$venv/.convergio-venv-ready"

ready() {
  [[ -x "$venv/bin/python" && -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(printf '%s\n' "${pins[@]}")" ]]
}

if ready; then
  exit 0
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ready; then
  exit 0
fi

python="${PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
(cd "$venv" && eval "$check")
printf '%s\n' "${pins[@]}" > "$stamp"
