//! Every example card the project ships (`examples/cards/*.json`) validates
//! against our runtime schema (`schemas/json/agent-card.schema.json`) and
//! against the upstream A2A 1.0 schema (vendored in
//! `schemas/vendor/a2a/a2a-v1.0.schema.json`, origin and licence in the README
//! beside it), and a tampered card fails both.

use std::path::{Path, PathBuf};

use convergio_schemas::{validate, SchemaId};
use serde_json::{json, Map, Value};

/// The upstream schema, vendored in the repository (a fresh clone has
/// nothing beside it).
const UPSTREAM_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/vendor/a2a/a2a-v1.0.schema.json"
);

fn cards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cards")
}

fn example_cards() -> Vec<(String, Value)> {
    let mut cards = Vec::new();
    for entry in std::fs::read_dir(cards_dir()).expect("examples/cards exists") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable card");
        let card: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
        cards.push((path.display().to_string(), card));
    }
    cards.sort_by(|a, b| a.0.cmp(&b.0));
    cards
}

/// Rewrites the generated bundle's file-style `$ref`s
/// (`lf.a2a.v1.AgentCard.jsonschema.json`) to `#/definitions/AgentCard`,
/// where definition keys are the titles without spaces, and drops the
/// per-definition `$schema` keywords.
fn rewrite(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("$schema");
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some(stem) = reference.strip_suffix(".jsonschema.json") {
                    let name = stem.rsplit('.').next().unwrap_or(stem);
                    *reference = format!("#/definitions/{name}");
                }
            }
            for child in map.values_mut() {
                rewrite(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

fn upstream_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(UPSTREAM_SCHEMA)
        .unwrap_or_else(|error| panic!("upstream schema at {UPSTREAM_SCHEMA}: {error}"));
    let bundle: Value = serde_json::from_str(&text).expect("upstream schema is JSON");
    let mut definitions = Map::new();
    for (title, definition) in bundle["definitions"]
        .as_object()
        .expect("definitions object")
    {
        let mut definition = definition.clone();
        rewrite(&mut definition);
        definitions.insert(title.replace(' ', ""), definition);
    }
    assert!(definitions.contains_key("AgentCard"));
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/definitions/AgentCard",
        "definitions": definitions,
    });
    jsonschema::validator_for(&schema).expect("upstream schema compiles")
}

#[test]
fn ships_four_to_six_example_cards() {
    let count = example_cards().len();
    assert!((4..=6).contains(&count), "{count} example cards");
}

#[test]
fn every_example_card_validates_against_our_schema() {
    for (path, card) in example_cards() {
        if let Err(violations) = validate(SchemaId::AgentCard, &card) {
            panic!("{path} fails our schema: {violations:?}");
        }
    }
}

#[test]
fn every_example_card_validates_against_the_upstream_a2a_schema() {
    let validator = upstream_validator();
    for (path, card) in example_cards() {
        let errors: Vec<String> = validator
            .iter_errors(&card)
            .map(|error| format!("{}: {error}", error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{path} fails the upstream schema: {errors:?}"
        );
    }
}

#[test]
fn tampered_example_card_fails_both_schemas() {
    let validator = upstream_validator();
    let (_, card) = example_cards().into_iter().next().expect("one card");
    // A renamed field: unknown to the upstream schema (closed objects) and a
    // missing required field for ours.
    let mut renamed = card.clone();
    let skills = renamed
        .as_object_mut()
        .and_then(|object| object.remove("skills"))
        .expect("card has skills");
    renamed["skillz"] = skills;
    assert!(validate(SchemaId::AgentCard, &renamed).is_err());
    assert!(!validator.is_valid(&renamed));
    // A wrongly typed field fails both too.
    let mut mistyped = card;
    mistyped["capabilities"]["streaming"] = json!("yes");
    assert!(validate(SchemaId::AgentCard, &mistyped).is_err());
    assert!(!validator.is_valid(&mistyped));
}
