//! End-to-end tests of Convergio live in `tests/tests/`; this library holds
//! what tests share, here and as a dev-dependency of the other crates: the
//! workspace root and fresh PostgreSQL databases ([`postgres`]).

use std::path::PathBuf;

pub mod postgres;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
