//! What an agent answers a graph node (a `SendMessage` result: message,
//! task or wrapper) becomes the node's output or a typed reply error; usage
//! is read from its metadata; `when` conditions follow dot paths into it.
//! None of these panic on any JSON.
//!
//! Input: a JSON value; after a 0xFF byte, a dot path.

#![no_main]

use convergio_orchestrator::dsl::lookup_path;
use convergio_orchestrator::mapping::{reply_output, reported_usage};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (json, path) = match data.iter().position(|byte| *byte == 0xFF) {
        Some(index) => (&data[..index], String::from_utf8_lossy(&data[index + 1..])),
        None => (data, "".into()),
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let _ = reply_output(&value);
    let _ = reported_usage(&value);
    let _ = lookup_path(&value, &path);
});
