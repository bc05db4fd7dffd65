//! JSON-RPC A2A request bodies in both dialects: every body is a `Call` or
//! a typed JSON-RPC error, and a call lifted from 0.3 can be lowered again
//! for a 0.3 upstream (or refused with a typed error) without panicking.
//!
//! Input: byte 0 picks the dialect, the rest is the body.

#![no_main]

use convergio_gateway::a2a::fuzzing::parse_jsonrpc;
use convergio_gateway::a2a::translate::request_to_v03;
use convergio_schemas::a2a::ProtocolVersion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let version = if selector % 2 == 0 {
        ProtocolVersion::V1_0
    } else {
        ProtocolVersion::V0_3
    };
    if let Ok(call) = parse_jsonrpc(&axum::body::Bytes::copy_from_slice(body), version) {
        let _ = request_to_v03(call.method, call.params().clone());
    }
});
