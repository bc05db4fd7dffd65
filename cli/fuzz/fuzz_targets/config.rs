//! The `convergio serve` configuration: any YAML file plus any
//! `CONVERGIO_*` environment resolves to a validated `Config` or a typed
//! `ConfigError` naming the field, never a panic.
//!
//! The cli crate has no library target, so its configuration modules
//! (which use nothing else of the binary: each section's runtime lives in
//! a module of its own, e.g. `telemetry.rs` beside `telemetry_config.rs`)
//! are compiled into this target from `../src` as they are.
//!
//! Input: the YAML text; after a 0xFF byte, `KEY=VALUE` lines of
//! environment.

#![no_main]
#![allow(dead_code)]

#[path = "../../src/config.rs"]
mod config;
#[path = "../../src/config_error.rs"]
mod config_error;
#[path = "../../src/env.rs"]
mod env;
#[path = "../../src/memory_config.rs"]
mod memory_config;
#[path = "../../src/models_config.rs"]
mod models_config;
#[path = "../../src/security_config.rs"]
mod security_config;
#[path = "../../src/telemetry_config.rs"]
mod telemetry_config;
#[path = "../../src/upstream_config.rs"]
mod upstream_config;

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, environment) = match data.iter().position(|byte| *byte == 0xFF) {
        Some(index) => (&data[..index], &data[index + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let environment: HashMap<String, String> = String::from_utf8_lossy(environment)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let Ok(file) = config::ConfigFile::parse(text, Path::new("fuzz.yaml")) else {
        return;
    };
    let _ = config::Config::resolve(file, &environment, &config::Overrides::default());
});
