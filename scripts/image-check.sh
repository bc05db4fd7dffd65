#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with buildah (daemonless,
# Debian's package) and runs it: /readyz answers and a call through the
# gateway to the example echo agent completes.
#
# Base images cannot be pulled here, so the runtime base is made from
# Debian's packages with debootstrap (cached as localhost/convergio-base),
# and the compile stage is skipped: the binary built by cargo
# (CONVERGIO_BINARY, default target/release/convergio, else target/debug/convergio)
# is packaged with --build-arg BINARY_FROM=prebuilt. Builds and runs use
# chroot isolation: this machine refuses the OCI runtime's setrlimit
# (see deploy/README.md).
#
# Exit status: 0 built and served; 1 failed; 77 a tool is missing and cannot
# be installed (root and apt-get are needed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="localhost/convergio-base:bookworm"
image="localhost/convergio:check"
mirror="${CONVERGIO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

skip() {
  echo "image-check: skipped: $*" >&2
  exit 77
}

for tool in buildah debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    [[ "$(id -u)" == 0 ]] || skip "$tool is missing and installing it needs root"
    apt-get install -y -qq "$tool" >/dev/null || skip "apt-get install $tool failed"
  fi
done

binary="${CONVERGIO_BINARY:-}"
if [[ -z "$binary" ]]; then
  for candidate in "$root/target/release/convergio" "$root/target/debug/convergio"; do
    if [[ -x "$candidate" ]]; then
      binary="$candidate"
      break
    fi
  done
fi
[[ -n "$binary" && -x "$binary" ]] || skip "no convergio binary: run cargo build --bin convergio first"

work="$(mktemp -d)"
containers=()
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  for container in "${containers[@]}"; do
    buildah rm "$container" >/dev/null 2>&1 || true
  done
  rm -rf "$work" "$root/target/image"
  # Earlier check images lose their tag to the new one: drop them.
  buildah rmi --prune >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  echo "image-check: making $base with debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; echo "image-check: debootstrap failed" >&2; exit 1; }
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  container="$(buildah from scratch)"
  containers+=("$container")
  buildah add "$container" "$work/rootfs.tar" / >/dev/null
  buildah commit --quiet "$container" "$base" >/dev/null
fi

mkdir -p "$root/target/image/data"
cp "$binary" "$root/target/image/convergio"
echo "image-check: building $image from deploy/Dockerfile ($binary)"
buildah bud --quiet --isolation chroot \
  --build-arg RUNTIME_IMAGE="$base" --build-arg BINARY_FROM=prebuilt \
  -f "$root/deploy/Dockerfile" -t "$image" "$root" > "$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; echo "image-check: build failed" >&2; exit 1; }
size="$(buildah images --format '{{.Size}}' "$image" 2>/dev/null | head -1)"
user="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")"
[[ "$user" == "65532:65532" ]] || { echo "image-check: runs as '$user', not 65532:65532" >&2; exit 1; }

# Run the image's entrypoint as its user, on a free loopback port (chroot
# isolation shares the host's network).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
container="$(buildah from "$image")"
containers+=("$container")
buildah run --isolation chroot --user 65532:65532 "$container" -- \
  /usr/local/bin/convergio serve --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 150); do
  if buildah run --isolation chroot --user 65532:65532 "$container" -- \
    /usr/local/bin/convergio probe "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    ready=yes
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
[[ -n "$ready" ]] || { cat "$work/serve.log" >&2; echo "image-check: /readyz never answered 200" >&2; exit 1; }
echo "image-check: /readyz ready (the image's HEALTHCHECK command)"

reply="$(python3 - "$port" <<'PY'
import json, sys, urllib.request
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
    "message": {"messageId": "image-check", "role": "ROLE_USER", "parts": [{"text": "hello from the image"}]}}}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/agents/echo", data=body,
    headers={"Content-Type": "application/json", "A2A-Version": "1.0"})
print(json.load(urllib.request.urlopen(request, timeout=10))["result"]["task"]["status"]["state"])
PY
)"
[[ "$reply" == "TASK_STATE_COMPLETED" ]] || { echo "image-check: echo answered $reply" >&2; exit 1; }
echo "image-check: a call through the gateway to echo completed"

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""
echo "image-check: $image ($size, user $user) built and served"
