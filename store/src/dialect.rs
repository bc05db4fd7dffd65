//! The small dialect between the backends: statements are written once with
//! PostgreSQL's `$N` placeholders and rewritten to SQLite's `?N` (which
//! SQLite binds by the same number).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use convergio_schemas::{StorageError, StorageFailure};

/// A database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The embedded default: one file beside the server.
    Sqlite,
    /// Shared by replicas.
    Postgres,
}

// === impl Backend ===

impl Backend {
    /// How a write transaction starts. SQLite takes the write lock up
    /// front: a deferred transaction that read first fails at once
    /// (SQLITE_BUSY, "database is locked") when another connection of the
    /// file (the audit writer, the registry) is writing, where `BEGIN
    /// IMMEDIATE` waits its turn under the busy timeout.
    pub fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// The backend a URL names.
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StorageError::plain(
                StorageFailure::InvalidUrl,
                format!(
                    "{} names no supported backend: expected sqlite:… or postgres://…",
                    crate::redact(url)
                ),
            ))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// `sql` for this backend: unchanged for PostgreSQL; for SQLite each
    /// `$` followed by a digit becomes `?` (a `$` elsewhere, as in a JSON
    /// path `'$.name'`, is kept).
    pub fn sql(self, sql: &'static str) -> Cow<'static, str> {
        match self {
            Self::Postgres => Cow::Borrowed(sql),
            Self::Sqlite => sqlite_placeholders(sql),
        }
    }
}

fn sqlite_placeholders(sql: &'static str) -> Cow<'static, str> {
    let bytes = sql.as_bytes();
    let placeholder = |at: usize| {
        bytes[at] == b'$' && bytes.get(at + 1).is_some_and(|next| next.is_ascii_digit())
    };
    if !(0..bytes.len()).any(placeholder) {
        return Cow::Borrowed(sql);
    }
    // Statements are `'static` text, so there are finitely many: each is
    // rewritten once and kept for the process, instead of on every query of
    // the hot path (a task route per proxied call).
    static REWRITTEN: LazyLock<RwLock<HashMap<(usize, usize), &'static str>>> =
        LazyLock::new(RwLock::default);
    let key = (sql.as_ptr() as usize, sql.len());
    if let Some(done) = REWRITTEN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Cow::Borrowed(done);
    }
    let mut out = String::with_capacity(sql.len());
    for (at, character) in sql.char_indices() {
        out.push(if placeholder(at) { '?' } else { character });
    }
    let done: &'static str = Box::leak(out.into_boxed_str());
    let kept = *REWRITTEN
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(done);
    Cow::Borrowed(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_numbered_question_marks_and_keeps_json_paths() {
        assert_eq!(
            Backend::Sqlite
                .sql("SELECT json_extract(card, '$.name') FROM a WHERE id = $1 AND v = $12"),
            "SELECT json_extract(card, '$.name') FROM a WHERE id = ?1 AND v = ?12"
        );
        assert_eq!(Backend::Postgres.sql("WHERE id = $1"), "WHERE id = $1");
        assert!(matches!(Backend::Sqlite.sql("SELECT 1"), Cow::Borrowed(_)));
        // A rewritten statement is kept: the second call hands out the same text.
        static STATEMENT: &str = "SELECT $1";
        let first = Backend::Sqlite.sql(STATEMENT);
        let second = Backend::Sqlite.sql(STATEMENT);
        assert_eq!(first, "SELECT ?1");
        assert!(std::ptr::eq(first.as_ref(), second.as_ref()));
    }

    #[test]
    fn urls_pick_their_backend_or_say_why_not() {
        assert_eq!(
            Backend::of_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/d").ok(),
            Some(Backend::Postgres)
        );
        let refused = Backend::of_url("mysql://u:pw@h/d")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("the database URL is not usable: mysql://u:***@h/d names no supported backend: expected sqlite:… or postgres://…")
        );
    }
}
