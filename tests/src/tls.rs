//! The test certificates and keys (a CA, a `localhost` server, clients with
//! DNS, SPIFFE and no SANs, a rogue CA and client, an RSA key), kept beside
//! the mTLS code that reads them in `auth/tests/fixtures` (see its README for
//! how they were made). Other crates' tests reach them only through here.

use std::path::PathBuf;

/// The path of the fixture file `name` (e.g. `ca.pem`, `server.key`).
pub fn fixture(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("auth/tests/fixtures")
        .join(name)
}

/// The bytes of the fixture file `name`; panics naming it when missing.
pub fn read(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}
