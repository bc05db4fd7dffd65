#!/usr/bin/env bash
# Regenerates gateway/src/a2a/grpc/proto.rs from schemas/vendor/a2a/a2a.proto
# with protox (a pure-Rust protobuf compiler: no protoc), tonic-prost-build
# and pbjson-build. The generator is its own crate, outside the workspace,
# so a normal build compiles none of it; run this after updating the proto.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/grpc-codegen}" \
  cargo run --release --quiet --manifest-path "$root/gateway/grpc-codegen/Cargo.toml" -- "$root"
# Not rustfmt-formatted (pbjson emits long lines rustfmt rejects): the
# module is declared `#[rustfmt::skip]`.
