//! The data directory holds secrets: the admin token, the federation signing
//! key, the key sealing organisations' secrets (`secrets.key`), and the SQLite database with API key hashes, peers and the audit
//! chain. It is the owner's only (issue #14): the directory is created 0700
//! and the files in it 0600, and a directory or file an older version left
//! readable by others is tightened at start, with a warning saying so.
//!
//! SQLite creates its `-wal`, `-shm` and `-journal` files with the
//! permission bits of the database file, so creating the database file 0600
//! before the first connection opens it covers them too (an empty file is an
//! empty SQLite database).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The generated signing key's file in the data dir.
pub const SIGNING_KEY_FILE_NAME: &str = "federation-key.pem";

/// The generated key sealing secrets at rest (issue 17).
pub const SECRETS_KEY_FILE_NAME: &str = "secrets.key";

/// Files the server writes into the data directory besides the database.
const SECRET_FILES: [&str; 3] = ["admin-token", SIGNING_KEY_FILE_NAME, SECRETS_KEY_FILE_NAME];

/// What SQLite adds beside a database file.
const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates (or tightens) `data_dir` and the database file `database_url`
/// names, before anything is written into them.
pub fn prepare(data_dir: &Path, database_url: &str) -> anyhow::Result<()> {
    create_private_dir(data_dir)?;
    for name in SECRET_FILES {
        tighten(&data_dir.join(name))?;
    }
    if let Some(database) = sqlite_file(database_url) {
        create_private_file(&database)?;
        for suffix in SQLITE_SIDE_FILES {
            let mut side = database.clone().into_os_string();
            side.push(suffix);
            tighten(Path::new(&side))?;
        }
    }
    Ok(())
}

/// The file a `sqlite:` URL names, if it names one (not `:memory:`).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Writes a secret readable only by the owner.
pub fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
    }
    restrict(dir, 0o700)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !path.exists() {
        // `create_new`: a file that appeared meanwhile is someone else's
        // to keep; it is tightened below like an existing one.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", path.display()));
            }
        }
    }
    restrict(path, 0o600)
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Tightens an existing file to 0600; a missing one is left missing.
fn tighten(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        restrict(path, 0o600)?;
    }
    Ok(())
}

/// Sets `path` to `mode` when it grants anything to group or others.
#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let current = metadata.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {} to {mode:o}", path.display()))?;
    eprintln!(
        "warning: {} was readable by others ({current:o}); tightened to {mode:o}, \
         as the data dir holds secrets",
        path.display()
    );
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_a_sqlite_url_names() {
        let check = |url: &str, expected: Option<&str>| {
            assert_eq!(sqlite_file(url), expected.map(PathBuf::from), "{url}");
        };
        check(
            "sqlite://./.convergio/convergio.db?mode=rwc",
            Some("./.convergio/convergio.db"),
        );
        check("sqlite:/var/lib/c.db", Some("/var/lib/c.db"));
        check("sqlite::memory:", None);
        check("sqlite://:memory:", None);
        check("postgres://postgres@127.0.0.1/x", None);
    }
}
