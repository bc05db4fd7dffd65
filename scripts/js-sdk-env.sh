#!/usr/bin/env bash
# Creates (once) and caches the official A2A JavaScript SDK (@a2a-js/sdk,
# pinned by interop/js/package-lock.json), installed with `npm ci` into
# `.js-sdk-env/` at the repository root, for the gateway's JS SDK interop
# test (gateway/tests/js_sdk.rs). Idempotent: when the stamp matches the
# lock file it exits at once, so tests may call it on every run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="${CONVERGIO_JS_SDK_ENV:-$root/.js-sdk-env}"
lock_source="$root/interop/js/package-lock.json"
stamp="$env_dir/.convergio-js-sdk-ready"

ready() {
  [[ -f "$stamp" && -d "$env_dir/node_modules/@a2a-js/sdk" ]] && cmp -s "$stamp" "$lock_source"
}

if ready; then
  exit 0
fi

# Concurrent test runs wait for the one that is installing.
mkdir -p "$(dirname "$env_dir")"
exec 9>"$env_dir.lock"
flock 9
if ready; then
  exit 0
fi

mkdir -p "$env_dir"
cp "$root/interop/js/package.json" "$lock_source" "$env_dir/"
(cd "$env_dir" && npm ci --no-audit --no-fund --silent)
node --input-type=module -e "await import('$env_dir/node_modules/@a2a-js/sdk/dist/client/index.js')"
cp "$lock_source" "$stamp"
