//! [`ConfigError`]: why a configuration cannot be used, shared by the
//! config file's sections ([`crate::config`], [`crate::security_config`]).
//!
//! A leaf module, so the file and its security section, which compose each
//! other's types, do not also import each other for their error.

use std::path::PathBuf;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse or has unknown or mistyped fields.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_yaml's error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is out of range or malformed.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The dotted field name or environment key.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// `value`, the environment variable `key`, parsed as a `T`; else an
/// [`ConfigError::Invalid`] naming `key` and saying what was `expected`.
pub fn parse_env<T: std::str::FromStr>(
    key: &str,
    value: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        field: key.to_owned(),
        message: format!("expected {expected}, found {value:?}"),
    })
}
