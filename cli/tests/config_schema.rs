//! The config contract (issue #22): the JSON Schema `convergio config
//! schema` prints is derived from the config types and checked in at
//! `schemas/json/config.schema.json`; every config file shipped under
//! `deploy/` validates against it and passes `convergio config check`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::BINARY;

/// The checked-in schema.
const CHECKED_IN: &str = include_str!("../../schemas/json/config.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(CHECKED_IN).expect("the checked-in schema is JSON");
    jsonschema::validator_for(&schema).expect("the checked-in schema compiles")
}

/// Every `convergio*.yaml` under `dir`, recursively.
fn config_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reads deploy/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            config_files(&path, found);
        } else if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("convergio") && name.ends_with(".yaml"))
        {
            found.push(path);
        }
    }
}

#[test]
fn the_checked_in_config_schema_is_the_generated_one() {
    let output = Command::new(BINARY)
        .args(["config", "schema"])
        .output()
        .expect("the CLI runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        printed.trim_end() == CHECKED_IN.trim_end(),
        "schemas/json/config.schema.json is stale: regenerate it with \
         `convergio config schema > schemas/json/config.schema.json`"
    );
}

#[test]
fn every_config_under_deploy_validates_against_the_schema() {
    let validator = validator();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files = Vec::new();
    config_files(&deploy, &mut files);
    // The sample and the Kubernetes and compose configs.
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("reads the config");
        let document: Value = serde_yaml::from_str(&text).expect("YAML");
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        let output = Command::new(BINARY)
            .args(["config", "check"])
            .arg(file)
            .env_remove("CONVERGIO_DATABASE_URL")
            .env_remove("CONVERGIO_ADMIN_TOKEN")
            .output()
            .expect("the CLI runs");
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_schema_refuses_unknown_fields_and_wrong_types() {
    let validator = validator();
    assert!(validator.is_valid(&json!({})));
    assert!(validator.is_valid(&json!({"version": 1, "server": {"shutdown_delay_seconds": 5}})));
    for bad in [
        json!({"version": 1, "bogus": true}),
        json!({"server": {"max_connections": "many"}}),
        json!({"tls": {"cert_file": "c.pem"}}),
        json!({"log": {"format": "xml"}}),
        json!({"quotas": {"per_agent": {"per_second": 1}}}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}
