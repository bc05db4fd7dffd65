//! HTTP+JSON A2A requests as the gateway decodes them from the raw URI:
//! path tail (strict percent-decoding, `%3A` colons, tenant prefix), query
//! (the `A2A-Version` parameter, typed fields) and body, for each HTTP
//! method and dialect. Every input is a `Call` or a typed error.
//!
//! Input: byte 0 picks the HTTP method and dialect; the rest is
//! `path-tail ␀ query ␀ body` (missing parts are empty).

#![no_main]

use axum::http::{HeaderMap, Method};
use convergio_gateway::a2a::fuzzing::{client_version, decode_segments, parse_rest, query_pairs};
use convergio_schemas::a2a::ProtocolVersion;
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::PUT];

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |byte| *byte == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = parts.next().map(String::from_utf8_lossy);
    let body = parts.next().unwrap_or_default();

    let method = &METHODS[usize::from(selector % 4)];
    let _ = query.as_deref().map(query_pairs);
    let version = match client_version(&HeaderMap::new(), query.as_deref()) {
        Ok(version) => version,
        Err(_) if selector & 4 == 0 => ProtocolVersion::V1_0,
        Err(_) => ProtocolVersion::V0_3,
    };
    let Ok(segments) = decode_segments(&path) else {
        return;
    };
    // Empty segments (`a//b`) are skipped, and a non-empty one never decodes to nothing.
    assert!(segments.iter().all(|segment| !segment.is_empty()));
    let _ = parse_rest(method, &segments, query.as_deref(), body, version);
});
