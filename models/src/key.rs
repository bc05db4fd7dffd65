//! API keys: the [`ApiKey`] secret newtype, the [`KeySource`] that resolves
//! a declaration's key reference, and [`EnvKeys`] for `env:` and `file:`
//! references (`secret:` references are the store's, behind the same trait).
//!
//! **Invariant:** an [`ApiKey`]'s value leaves this crate only in the one
//! request header the provider needs. `Debug` and `Display` print the
//! reference, and no error holds the value.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;

use reqwest::header::HeaderValue;

use crate::error::{KeyError, ProviderError};

/// A provider API key together with the reference it was read from.
#[derive(Clone)]
pub struct ApiKey {
    reference: String,
    value: String,
}

// === impl ApiKey ===

impl ApiKey {
    /// A key read from `reference` (`env:OPENAI_API_KEY`, `secret:openai`).
    pub fn new(reference: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            value: value.into(),
        }
    }

    /// No key: for a provider that takes none (a local llama.cpp, Ollama
    /// or vLLM server). Requests carry no key header.
    pub fn none() -> Self {
        Self {
            reference: "none".to_owned(),
            value: String::new(),
        }
    }

    /// Where the key came from; safe to print.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The key itself (tests only; requests take [`ApiKey::header`]).
    #[cfg(test)]
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// The key as a request header's value, after `prefix` (`"Bearer "` or
    /// nothing), marked sensitive so no HTTP layer prints it; `None` for
    /// [`ApiKey::none`]. A key that is not a valid header value is refused
    /// by name, never quoted.
    pub(crate) fn header(&self, prefix: &str) -> Result<Option<HeaderValue>, ProviderError> {
        if self.value.is_empty() {
            return Ok(None);
        }
        let mut header =
            HeaderValue::from_str(&format!("{prefix}{}", self.value)).map_err(|_| {
                ProviderError::KeyRefused {
                    key_reference: self.reference.clone(),
                    status: 0,
                }
            })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// `text` with every occurrence of the key replaced by `[redacted]`:
    /// applied to anything quoted from a provider before it is kept.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.value.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.value, "[redacted]")
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.reference)
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.reference)
    }
}

/// Resolves key references. Called before every provider call, so a rotated
/// key takes effect without a restart.
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The key `reference` names, for an agent owned by `org`.
    async fn key(&self, org: &str, reference: &str) -> Result<ApiKey, KeyError>;
}

/// Resolves `env:NAME` (from an environment map) and `file:PATH` (the file's
/// contents, trimmed). Any other scheme is [`KeyError::Unsupported`].
#[derive(Debug, Clone, Default)]
pub struct EnvKeys {
    environment: HashMap<String, String>,
}

// === impl EnvKeys ===

impl EnvKeys {
    /// Reads `env:` references from this map (tests pass their own).
    pub fn from_map(environment: HashMap<String, String>) -> Self {
        Self { environment }
    }

    /// Reads `env:` references from the process environment, as it is now.
    pub fn from_process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    fn resolve(&self, reference: &str) -> Result<ApiKey, KeyError> {
        let missing = || KeyError::Missing {
            reference: reference.to_owned(),
        };
        let value = if let Some(name) = reference.strip_prefix("env:") {
            self.environment.get(name).cloned().ok_or_else(missing)?
        } else if let Some(path) = reference.strip_prefix("file:") {
            match std::fs::read_to_string(PathBuf::from(path)) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                Err(source) => {
                    return Err(KeyError::Unreadable {
                        reference: reference.to_owned(),
                        source,
                    })
                }
            }
        } else {
            return Err(KeyError::Unsupported {
                reference: reference.to_owned(),
            });
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(missing());
        }
        Ok(ApiKey::new(reference, value))
    }
}

#[async_trait]
impl KeySource for EnvKeys {
    async fn key(&self, _org: &str, reference: &str) -> Result<ApiKey, KeyError> {
        self.resolve(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_print_the_reference_never_the_value() {
        let key = ApiKey::new("env:OPENAI_API_KEY", "sk-very-secret");
        assert_eq!(format!("{key:?}"), "ApiKey(env:OPENAI_API_KEY)");
        assert_eq!(key.to_string(), "ApiKey(env:OPENAI_API_KEY)");
        assert_eq!(
            key.scrub("bad key sk-very-secret given"),
            "bad key [redacted] given"
        );
    }

    #[test]
    fn resolves_env_and_file_references() {
        let directory = std::env::temp_dir().join(format!("models-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let file = directory.join("key");
        std::fs::write(&file, "sk-from-file\n").expect("write key");
        let keys = EnvKeys::from_map(HashMap::from([
            ("KEY".to_owned(), "sk-env".to_owned()),
            ("EMPTY".to_owned(), "  ".to_owned()),
        ]));
        assert_eq!(
            keys.resolve("env:KEY").map(|k| k.value().to_owned()).ok(),
            Some("sk-env".into())
        );
        let from_file = keys
            .resolve(&format!("file:{}", file.display()))
            .expect("file key");
        assert_eq!(from_file.value(), "sk-from-file");
        assert!(matches!(
            keys.resolve("env:EMPTY"),
            Err(KeyError::Missing { .. })
        ));
        assert!(matches!(
            keys.resolve("env:NONE"),
            Err(KeyError::Missing { .. })
        ));
        assert!(matches!(
            keys.resolve("secret:openai"),
            Err(KeyError::Unsupported { .. })
        ));
        let _ = std::fs::remove_dir_all(directory);
    }
}
