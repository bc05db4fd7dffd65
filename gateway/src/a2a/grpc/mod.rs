//! The A2A gRPC binding (issue 24): `lf.a2a.v1.A2AService` served on the
//! gateway's own listener next to JSON-RPC and HTTP+JSON (HTTP/2 cleartext
//! or TLS; requests to `/lf.a2a.v1.A2AService/…` are routed here), and
//! the upstream side for agents whose card offers `GRPC`.
//!
//! A gRPC call is not a pipeline of its own: its message is turned into the
//! same ProtoJSON params a JSON binding carries (pbjson serde on the
//! generated types, so nothing is converted by hand), becomes one
//! [`super::Call`] and goes through the same gatekeeper, task ownership,
//! guardrails and audit as every other call; the result comes back the
//! same way. The code in [`proto`] is generated once from the vendored
//! `schemas/vendor/a2a/a2a.proto` by `scripts/grpc-codegen.sh` (protox, so
//! no `protoc`; checked in so a normal build compiles no protobuf compiler).

#[rustfmt::skip]
pub mod proto;
mod service;
pub(crate) mod upstream;

pub(crate) use crate::grpc_status as status;
pub(crate) use crate::grpc_status::SERVICE_PATH;
pub(crate) use service::server;
