//! End-to-end tests of Convergio live in `tests/tests/`; this library holds
//! what they share (`support`): spawning servers on 127.0.0.1:0 and finding
//! the workspace root.

use std::path::PathBuf;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
