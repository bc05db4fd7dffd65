//! The `memory:` section of the configuration (issue 20): the local
//! embedding models vector namespaces may name (`"embedding": {"provider":
//! "local", "model": NAME}`), each a directory in the Hugging Face
//! sentence-transformers layout, run in-process by `convergio-memory`.
//!
//! ```yaml
//! memory:
//!   local_models:
//!     all-minilm-l6-v2: /var/lib/convergio/models/all-minilm-l6-v2
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;
use crate::env;

/// The `memory:` section as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// Local embedding models by name: each a directory holding
    /// `config.json`, `tokenizer.json` and `model.safetensors` (a BERT
    /// sentence-transformers model), loaded once on first use. Default:
    /// none. `CONVERGIO_MEMORY_LOCAL_MODELS` as `name=dir,name=dir`.
    pub local_models: BTreeMap<String, PathBuf>,
}

/// The `CONVERGIO_MEMORY_*` overrides.
pub fn apply_environment(
    section: &mut MemorySection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
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
}
