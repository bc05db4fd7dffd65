#!/usr/bin/env bash
# Creates (once) and caches what the console's browser tests need: Debian's
# `chromium` (installed with apt when /usr/bin/chromium is missing) and the
# pinned npm packages of cli/tests/browser/package-lock.json (playwright-core
# to drive the browser, axe-core for the accessibility check), installed with
# `npm ci` into `.browser-env/` at the repository root. Idempotent: when the
# browser is there and the stamp matches the lock file it exits at once, so
# tests may call it on every run. Never downloads a browser build of its own
# (playwright-core has no download step; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD is
# set anyway).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="${CONVERGIO_BROWSER_ENV:-$root/.browser-env}"
lock_source="$root/cli/tests/browser/package-lock.json"
stamp="$env_dir/.convergio-browser-ready"

ready() {
  [[ -x /usr/bin/chromium && -f "$stamp" && -d "$env_dir/node_modules/playwright-core" ]] \
    && cmp -s "$stamp" "$lock_source"
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

if [[ ! -x /usr/bin/chromium ]]; then
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
fi

mkdir -p "$env_dir"
cp "$root/cli/tests/browser/package.json" "$lock_source" "$env_dir/"
(cd "$env_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
node -e "require('$env_dir/node_modules/playwright-core'); require('$env_dir/node_modules/axe-core')"
cp "$lock_source" "$stamp"
