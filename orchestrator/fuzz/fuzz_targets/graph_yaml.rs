//! Graph documents as a caller posts them: YAML (or JSON) parsed, checked
//! against the graph schema, then validated against a catalog, with every
//! error located by the hand-written `SourceMap` scanner. Any text gives a
//! graph or typed errors, never a panic. The scanner is also driven
//! directly with arbitrary JSON pointers.
//!
//! Input: the text; after a 0xFF byte, an extra JSON pointer for the
//! scanner.

#![no_main]

use convergio_orchestrator::source::SourceMap;
use convergio_orchestrator::{parse_yaml, validate, AnyAgent, Limits, StaticCatalog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, pointer) = match data.iter().position(|byte| *byte == 0xFF) {
        Some(index) => (&data[..index], Some(&data[index + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Some(pointer) = pointer {
        let pointer = String::from_utf8_lossy(pointer);
        let _ = SourceMap::new(text).locate(&pointer);
    }
    let Ok(spec) = parse_yaml(text) else {
        return;
    };
    let small = Limits {
        max_nodes: 16,
        max_edges: 64,
        max_subgraph_depth: 3,
        ..Limits::default()
    };
    let _ = validate(&spec, &AnyAgent, &Limits::default());
    let _ = validate(&spec, &StaticCatalog::new(["echo", "a", "b"]), &small);
});
