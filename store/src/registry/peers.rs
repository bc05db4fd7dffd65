//! [`Peers`]: the `peers` and `peer_nonces` tables (migration 0004) on
//! either backend. Small, keyed by domain: one statement per operation, no
//! transaction needed. A nonce is insert-or-nothing on its primary key, so
//! exactly one replica accepts it.

use async_trait::async_trait;
use convergio_registry::peers::{keys_from_text, keys_to_text, PeerRow, PeerStore};
use convergio_registry::Result;
use sqlx::Row;

use super::on_pool;
use crate::{Db, DbResult};

/// The columns of a peer row, in the order of the INSERT's placeholders.
macro_rules! columns {
    () => {
        "domain, base_url, jwks_url, keys, trust, created_at, updated_at"
    };
}

/// Peers in the process's database.
#[derive(Debug, Clone)]
pub struct Peers {
    db: Db,
}

// === impl Peers ===

impl Peers {
    /// The peer store of `db`.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }

    /// Runs the peer upsert `statement` (`$1`…`$7` in [`columns!`] order);
    /// returns how many rows it wrote.
    async fn write(&self, statement: &'static str, row: &PeerRow) -> Result<u64> {
        let statement = self.db.backend().sql(statement);
        Ok(on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(&row.domain)
            .bind(&row.base_url)
            .bind(&row.jwks_url)
            .bind(keys_to_text(&row.keys))
            .bind(&row.trust)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(pool)
            .await
            .db("storing a peer")?
            .rows_affected()))
    }
}

/// Decodes one peer row of either backend.
macro_rules! decode {
    ($row:expr) => {{
        let row = $row;
        let read = "reading a peer";
        let keys: String = row.try_get("keys").db(read)?;
        Ok::<_, convergio_registry::RegistryError>(PeerRow {
            domain: row.try_get("domain").db(read)?,
            base_url: row.try_get("base_url").db(read)?,
            jwks_url: row.try_get("jwks_url").db(read)?,
            keys: keys_from_text(&keys)?,
            trust: row.try_get("trust").db(read)?,
            created_at: row.try_get("created_at").db(read)?,
            updated_at: row.try_get("updated_at").db(read)?,
        })
    }};
}

#[async_trait]
impl PeerStore for Peers {
    async fn insert(&self, row: &PeerRow) -> Result<bool> {
        let written = self
            .write(
                concat!(
                    "INSERT INTO peers (",
                    columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (domain) DO NOTHING"
                ),
                row,
            )
            .await?;
        Ok(written > 0)
    }

    async fn put(&self, row: &PeerRow) -> Result<()> {
        self.write(
            concat!(
                "INSERT INTO peers (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (domain) DO UPDATE SET base_url = excluded.base_url, \
                 jwks_url = excluded.jwks_url, keys = excluded.keys, trust = excluded.trust, \
                 updated_at = excluded.updated_at"
            ),
            row,
        )
        .await?;
        Ok(())
    }

    async fn get(&self, domain: &str) -> Result<Option<PeerRow>> {
        let statement = self.db.backend().sql(concat!(
            "SELECT ",
            columns!(),
            " FROM peers WHERE domain = $1"
        ));
        on_pool!(self.db, |pool| {
            let row = sqlx::query(&statement)
                .bind(domain)
                .fetch_optional(pool)
                .await
                .db("reading a peer")?;
            row.map(|row| decode!(row)).transpose()
        })
    }

    async fn list(&self) -> Result<Vec<PeerRow>> {
        let statement = concat!("SELECT ", columns!(), " FROM peers ORDER BY domain");
        on_pool!(self.db, |pool| {
            let rows = sqlx::query(statement)
                .fetch_all(pool)
                .await
                .db("listing peers")?;
            rows.into_iter().map(|row| decode!(row)).collect()
        })
    }

    async fn delete(&self, domain: &str) -> Result<bool> {
        let statement = self.db.backend().sql("DELETE FROM peers WHERE domain = $1");
        let deleted = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(domain)
            .execute(pool)
            .await
            .db("removing a peer")?
            .rows_affected());
        Ok(deleted > 0)
    }

    async fn remember_nonce(&self, peer: &str, nonce: &str, expires_at: i64) -> Result<bool> {
        let statement = self.db.backend().sql(
            "INSERT INTO peer_nonces (peer, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (peer, nonce) DO NOTHING",
        );
        let inserted = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(peer)
            .bind(nonce)
            .bind(expires_at)
            .execute(pool)
            .await
            .db("remembering a nonce")?
            .rows_affected());
        Ok(inserted > 0)
    }

    async fn purge_nonces(&self, now: i64) -> Result<u64> {
        let statement = self
            .db
            .backend()
            .sql("DELETE FROM peer_nonces WHERE expires_at < $1");
        Ok(on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(now)
            .execute(pool)
            .await
            .db("purging nonces")?
            .rows_affected()))
    }
}
