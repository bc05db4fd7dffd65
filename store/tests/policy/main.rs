//! The policy store on SQLite and PostgreSQL (`CONVERGIO_TEST_POSTGRES_URL`,
//! a fresh database per test): policy versions and the watcher
//! ([`conformance`]), the audit chain, its verification and its retention
//! ([`retention`]). Every case runs on both backends through
//! `convergio_tests::on_both_backends!`.

mod conformance;
mod retention;

use std::sync::Arc;

use convergio_policy::{AuditLog, PolicyAdmin, PolicyEngine, Store};
use convergio_schemas::{AuthMethod, Principal};
use convergio_store::policy::PolicyStore;
use convergio_store::{Db, DbConfig};

/// A fresh database, by URL; the test kit keeps it alive for the test.
pub struct Harness {
    url: String,
}

/// The harness over the fresh database at `url`.
pub async fn open(url: &str) -> Harness {
    Harness {
        url: url.to_owned(),
    }
}

/// A caller of acme.example, signed in with a JWT, with no scopes.
pub fn member(subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    }
}

impl Harness {
    /// A store on a pool of its own, as a separate replica would have.
    pub async fn store(&self) -> Arc<dyn Store> {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        Arc::new(PolicyStore::new(db))
    }

    /// An engine with the defaults over a store of its own.
    pub async fn admin(&self) -> PolicyAdmin {
        let engine = Arc::new(PolicyEngine::with_defaults().expect("defaults"));
        PolicyAdmin::new(engine, self.store().await)
    }

    /// The audit log over a store of its own.
    pub async fn audit(&self) -> AuditLog {
        AuditLog::new(self.store().await)
    }

    /// Runs raw SQL against the database (to tamper with rows).
    pub async fn execute(&self, sql: &str) -> u64 {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            let done = sqlx::query(sql).execute(&pool).await.expect("sql runs");
            pool.close().await;
            done.rows_affected()
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            let done = sqlx::query(sql).execute(&pool).await.expect("sql runs");
            pool.close().await;
            done.rows_affected()
        }
    }
}
