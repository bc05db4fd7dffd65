//! End-to-end tests of Convergio live in `tests/tests/`; this library holds
//! what tests share, here and as a dev-dependency of the other crates: the
//! workspace root, fresh PostgreSQL databases ([`postgres`]) and a fresh
//! database on either backend for storage suites ([`db`], [`on_both_backends!`]),
//! an SSE reader ([`sse`]), the test certificates ([`tls`]), a fake
//! embeddings provider ([`embeddings`]) and a process's CPU time and
//! memory for benches ([`proc`]).

use std::path::PathBuf;

pub mod db;
pub mod embeddings;
pub mod postgres;
pub mod proc;
pub mod sse;
pub mod tls;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
