//! The `memory:` section of the configuration (issue 20): the local
//! embedding models vector namespaces may name (`"embedding": {"provider":
//! "local", "model": NAME}`), each a directory in the Hugging Face
//! sentence-transformers layout, run in-process by `convergio-memory`, and
//! how often the vector index follows other replicas' writes.
//!
//! ```yaml
//! memory:
//!   local_models:
//!     all-minilm-l6-v2: /var/lib/convergio/models/all-minilm-l6-v2
//!   follow_interval_ms: 1000
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;
use crate::env;

/// The most `follow_interval_ms` may be: well inside the hour the store
/// keeps change records (`convergio_memory::CHANGE_RETENTION`), so a
/// following replica never needs to rebuild for having waited.
pub const MAX_FOLLOW_INTERVAL_MS: u64 = 600_000;

/// The `memory:` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// Local embedding models by name: each a directory holding
    /// `config.json`, `tokenizer.json` and `model.safetensors` (a BERT
    /// sentence-transformers model), loaded once on first use. Default:
    /// none. `CONVERGIO_MEMORY_LOCAL_MODELS` as `name=dir,name=dir`.
    pub local_models: BTreeMap<String, PathBuf>,
    /// Milliseconds between two catch-ups of the vector index with the
    /// writes of other replicas sharing the database (one query when
    /// nothing changed): a document another replica put or deleted is
    /// searched here within about this long. Default 1000, at most
    /// 600000; 0 stops following (other replicas' writes are then seen
    /// after a restart). `CONVERGIO_MEMORY_FOLLOW_INTERVAL_MS`.
    pub follow_interval_ms: u64,
}

impl Default for MemorySection {
    fn default() -> Self {
        Self {
            local_models: BTreeMap::new(),
            follow_interval_ms: 1_000,
        }
    }
}

// === impl MemorySection ===

impl MemorySection {
    /// How often to follow other replicas' writes (`None`: never).
    pub fn follow_interval(&self) -> Option<std::time::Duration> {
        (self.follow_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(self.follow_interval_ms))
    }
}

/// The `CONVERGIO_MEMORY_*` overrides.
pub fn apply_environment(
    section: &mut MemorySection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(value) = environment
        .get(env::MEMORY_FOLLOW_INTERVAL)
        .filter(|value| !value.is_empty())
    {
        section.follow_interval_ms = value.trim().parse().map_err(|_| {
            invalid(
                env::MEMORY_FOLLOW_INTERVAL,
                format!("expected a number of milliseconds, found {value:?}"),
            )
        })?;
    }
    let Some(value) = environment
        .get(env::MEMORY_LOCAL_MODELS)
        .filter(|value| !value.is_empty())
    else {
        return Ok(());
    };
    let mut models = BTreeMap::new();
    for pair in value.split(',').filter(|pair| !pair.trim().is_empty()) {
        let (name, directory) = pair.split_once('=').ok_or_else(|| {
            invalid(
                env::MEMORY_LOCAL_MODELS,
                "expected name=directory pairs separated by commas".to_owned(),
            )
        })?;
        models.insert(name.trim().to_owned(), PathBuf::from(directory.trim()));
    }
    section.local_models = models;
    Ok(())
}

/// Checks every model's name and that its directory holds the model's
/// files (nothing is parsed: a model loads on first use).
pub fn validate(section: MemorySection) -> Result<MemorySection, ConfigError> {
    if section.follow_interval_ms > MAX_FOLLOW_INTERVAL_MS {
        return Err(invalid(
            "memory.follow_interval_ms",
            format!("must be at most {MAX_FOLLOW_INTERVAL_MS}"),
        ));
    }
    for (name, directory) in &section.local_models {
        let field = format!("memory.local_models.{name}");
        convergio_memory::namespace::check_name("a local model's name", name)
            .map_err(|error| invalid(&field, error.to_string()))?;
        convergio_memory::local::check_directory(directory)
            .map_err(|error| invalid(&field, error.to_string()))?;
    }
    Ok(section)
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_models_from_the_environment_and_checks_their_directories() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let environment = HashMap::from([(
            env::MEMORY_LOCAL_MODELS.to_owned(),
            format!("mini={}", directory.path().display()),
        )]);
        let mut section = MemorySection::default();
        apply_environment(&mut section, &environment).expect("parsed");
        assert_eq!(
            section.local_models.get("mini"),
            Some(&directory.path().to_owned())
        );
        let missing = validate(section.clone()).expect_err("no model files");
        assert!(missing.to_string().contains("config.json"), "{missing}");
        for file in convergio_memory::local::REQUIRED_FILES {
            std::fs::write(directory.path().join(file), b"").expect("written");
        }
        validate(section).expect("files present");

        let bad = HashMap::from([(env::MEMORY_LOCAL_MODELS.to_owned(), "mini".to_owned())]);
        let mut section = MemorySection::default();
        assert!(apply_environment(&mut section, &bad).is_err());
    }

    #[test]
    fn the_follow_interval_defaults_to_a_second_and_is_bounded() {
        let section = MemorySection::default();
        assert_eq!(
            section.follow_interval(),
            Some(std::time::Duration::from_secs(1))
        );
        for (value, expected) in [("250", Some(250)), ("0", Some(0)), ("soon", None)] {
            let environment =
                HashMap::from([(env::MEMORY_FOLLOW_INTERVAL.to_owned(), value.to_owned())]);
            let mut section = MemorySection::default();
            let applied = apply_environment(&mut section, &environment);
            assert_eq!(
                applied.ok().map(|()| section.follow_interval_ms),
                expected,
                "{value}"
            );
        }
        let off = MemorySection {
            follow_interval_ms: 0,
            ..MemorySection::default()
        };
        assert_eq!(off.follow_interval(), None);
        let slow = MemorySection {
            follow_interval_ms: MAX_FOLLOW_INTERVAL_MS + 1,
            ..MemorySection::default()
        };
        assert!(validate(slow).is_err());
    }
}
