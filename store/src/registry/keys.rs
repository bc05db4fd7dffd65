//! [`ApiKeys`]: the `api_keys` table (migration 0003) on either backend.
//! Small, keyed by id: one statement per operation, no transaction needed.

use async_trait::async_trait;
use convergio_registry::keys::{scopes_from_text, scopes_to_text, ApiKeyRow, ApiKeyStore};
use convergio_registry::Result;
use sqlx::Row;

use super::on_pool;
use crate::{Db, DbResult};

/// The columns of a key row, in the order of the INSERT's placeholders.
macro_rules! columns {
    () => {
        "id, secret_sha256, subject, org, scopes, created_at, expires_at, revoked_at"
    };
}

/// API keys in the process's database.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    db: Db,
}

// === impl ApiKeys ===

impl ApiKeys {
    /// The key store of `db`.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

/// Decodes one key row of either backend.
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        let read = "reading an api key";
        let scopes: String = row.try_get("scopes").db(read)?;
        Ok::<_, convergio_registry::RegistryError>(ApiKeyRow {
            id: row.try_get("id").db(read)?,
            secret_sha256: row.try_get("secret_sha256").db(read)?,
            subject: row.try_get("subject").db(read)?,
            org: row.try_get("org").db(read)?,
            scopes: scopes_from_text(&scopes)?,
            created_at: row.try_get("created_at").db(read)?,
            expires_at: row.try_get("expires_at").db(read)?,
            revoked_at: row.try_get("revoked_at").db(read)?,
        })
    }};
}

#[async_trait]
impl ApiKeyStore for ApiKeys {
    async fn insert(&self, row: &ApiKeyRow) -> Result<()> {
        let statement = self.db.backend().sql(concat!(
            "INSERT INTO api_keys (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ));
        on_pool!(self.db, |pool| {
            sqlx::query(&statement)
                .bind(&row.id)
                .bind(&row.secret_sha256)
                .bind(&row.subject)
                .bind(&row.org)
                .bind(scopes_to_text(&row.scopes))
                .bind(row.created_at)
                .bind(row.expires_at)
                .bind(row.revoked_at)
                .execute(pool)
                .await
                .db("storing an api key")?;
        });
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let statement = self.db.backend().sql(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE id = $1"
        ));
        on_pool!(self.db, |pool| {
            let row = sqlx::query(&statement)
                .bind(id)
                .fetch_optional(pool)
                .await
                .db("reading an api key")?;
            row.map(|row| decode!(row)).transpose()
        })
    }

    async fn list(&self) -> Result<Vec<ApiKeyRow>> {
        let statement = concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys ORDER BY created_at, id"
        );
        on_pool!(self.db, |pool| {
            let rows = sqlx::query(statement)
                .fetch_all(pool)
                .await
                .db("listing api keys")?;
            rows.into_iter().map(|row| decode!(row)).collect()
        })
    }

    async fn revoke(&self, id: &str, at: i64) -> Result<bool> {
        let statement = self
            .db
            .backend()
            .sql("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL");
        let done = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .db("revoking an api key")?
            .rows_affected());
        Ok(done > 0)
    }
}
