#!/usr/bin/env bash
# Renders every Kubernetes overlay under deploy/kubernetes with
# `kubectl kustomize` and validates the output offline against the
# Kubernetes schemas with `kubernetes-validate` (PyPI, installed into
# `.venv-deploy/` at the repository root, as scripts/interop-venv.sh does),
# and checks that compose.yaml and the collector config are YAML.
#
# Exit status: 0 all valid; 1 a manifest is invalid; 77 a tool is missing and
# cannot be installed here (the caller skips with the printed reason).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CONVERGIO_DEPLOY_VENV:-$root/.venv-deploy}"
stamp="$venv/.convergio-deploy-ready"
pins=("kubernetes-validate==1.34.1")
# The Kubernetes version the manifests are validated against.
k8s_version="${CONVERGIO_K8S_VERSION:-1.32.0}"

skip() {
  echo "deploy-check: skipped: $*" >&2
  exit 77
}

kubectl="${KUBECTL:-$(command -v kubectl || true)}"
if [[ -z "$kubectl" ]]; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    apt-get install -y -qq kubernetes-client >/dev/null 2>&1 || true
  fi
  kubectl="$(command -v kubectl || true)"
  [[ -n "$kubectl" ]] || skip "kubectl is not installed and could not be installed (apt-get install kubernetes-client)"
fi

# The overlays use kustomize v4+ fields (`labels`, `patches`); Debian 12's
# kubernetes-client (1.20) bundles kustomize v2.
kustomize_version="$("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
[[ -n "$kustomize_version" && "$kustomize_version" -ge 4 ]] ||
  skip "kubectl's kustomize is older than v4 (found '${kustomize_version:-none}')"

ready() {
  [[ -x "$venv/bin/kubernetes-validate" && -f "$stamp" ]] &&
    [[ "$(cat "$stamp")" == "$(printf '%s\n' "${pins[@]}")" ]]
}
if ! ready; then
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if ! ready; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || skip "python3 is not installed"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" || skip "cannot create a Python venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" ||
      skip "cannot install ${pins[*]} from PyPI"
    printf '%s\n' "${pins[@]}" > "$stamp"
  fi
  exec 9>&-
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for overlay in "$root"/deploy/kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  rendered="$out/$name.yaml"
  "$kubectl" kustomize "$overlay" > "$rendered"
  kinds="$(grep -c '^kind:' "$rendered" || true)"
  if "$venv/bin/kubernetes-validate" --strict -k "$k8s_version" "$rendered" > "$out/$name.log" 2>&1; then
    echo "deploy-check: overlay $name: $kinds objects valid (Kubernetes $k8s_version, strict)"
  else
    echo "deploy-check: overlay $name: INVALID" >&2
    cat "$out/$name.log" >&2
    status=1
  fi
done

# compose.yaml and the collector's config: well-formed YAML (no compose
# engine is installed here to check them further).
for file in "$root/deploy/compose.yaml" "$root"/deploy/compose/*.yaml; do
  "$venv/bin/python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$file" ||
    { echo "deploy-check: $file is not valid YAML" >&2; status=1; }
done
exit "$status"
