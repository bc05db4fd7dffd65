//! 0.3 ↔ 1.0 translation of arbitrary JSON (requests, results, stream
//! events) for every method: unknown shapes pass through and nothing
//! panics. (Round trips hold only for well-formed A2A values; the proptest
//! in `gateway/tests/translate_properties.rs` checks those.)
//!
//! Input: byte 0 picks the method, the rest is a JSON value.

#![no_main]

use convergio_gateway::a2a::translate::{
    event_to_v03, event_to_v1, request_to_v03, request_to_v1, result_to_v03, result_to_v1,
};
use convergio_schemas::a2a::Method;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((selector, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let method = Method::ALL[usize::from(*selector) % Method::ALL.len()];
    let _ = request_to_v1(method, value.clone());
    let _ = request_to_v03(method, value.clone());
    let _ = result_to_v03(method, value.clone());
    let _ = result_to_v1(method, value.clone());
    let _ = event_to_v03(value.clone());
    let lifted = event_to_v1(value);
    let _ = event_to_v1(event_to_v03(lifted));
});
