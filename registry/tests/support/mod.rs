//! Shared test support: fresh stores on both backends and record builders.
//!
//! PostgreSQL comes from `CONVERGIO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every test gets its own
//! database, created here and dropped when the test finishes, so tests run in
//! parallel. If PostgreSQL is down the test fails and says so.

#![allow(dead_code)]

use std::sync::Arc;

use convergio_registry::model::{now, AgentRecord, Upstream};
use convergio_registry::{connect, Store};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

/// The default test PostgreSQL server.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh store and what it takes to clean it up.
pub struct Backend {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The store's URL.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Backend {
    /// Drops the test database (best effort) or removes the SQLite directory.
    pub async fn finish(mut self) {
        if let Some((admin_url, database)) = self.postgres.take() {
            drop_database(&admin_url, &database).await;
        }
    }
}

impl Drop for Backend {
    /// A test that panicked never reached `finish`: drop its database from a
    /// helper thread with its own runtime (the test's runtime is unwinding).
    fn drop(&mut self) {
        if let Some((admin_url, database)) = self.postgres.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(drop_database(&admin_url, &database));
                }
            })
            .join();
        }
    }
}

async fn drop_database(admin_url: &str, database: &str) {
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
            .await;
    }
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("registry.db").display()
    );
    let store = connect(&url)
        .await
        .expect("SQLite store opens and migrates");
    Backend {
        store,
        url,
        dir: Some(dir),
        postgres: None,
    }
}

/// The PostgreSQL admin URL for tests.
pub fn postgres_admin_url() -> String {
    std::env::var("CONVERGIO_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

/// A fresh PostgreSQL store in a database of its own.
pub async fn postgres() -> Backend {
    let admin_url = postgres_admin_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
            "PostgreSQL is not reachable at {admin_url} ({error}); the conformance suite needs it: \
             start it (see DEVELOPERS.md, or run .ci/run) or set CONVERGIO_TEST_POSTGRES_URL"
        )
        });
    let database = format!("convergio_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .expect("create the test database");
    let url = with_database(&admin_url, &database);
    let store = connect(&url)
        .await
        .expect("PostgreSQL store connects and migrates");
    Backend {
        store,
        url,
        dir: None,
        postgres: Some((admin_url, database)),
    }
}

/// A skill for [`card`]: id, name, tags.
pub type SkillSpec<'a> = (&'a str, &'a str, &'a [&'a str]);

/// A valid A2A 1.0 card.
pub fn card(
    name: &str,
    description: &str,
    skills: &[SkillSpec<'_>],
    input: &str,
    output: &str,
) -> Value {
    let skills: Vec<Value> = skills
        .iter()
        .map(|(id, skill_name, tags)| {
            json!({
                "id": id,
                "name": skill_name,
                "description": format!("{skill_name} for {name}"),
                "tags": tags,
            })
        })
        .collect();
    json!({
        "name": name,
        "description": description,
        "supportedInterfaces": [
            {"url": "http://127.0.0.1:9001/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "version": "1.0.0",
        "capabilities": {"streaming": true},
        "defaultInputModes": [input],
        "defaultOutputModes": [output],
        "skills": skills
    })
}

/// A version-1 record of an internal agent named `name`.
pub fn record(name: &str, card: Value) -> AgentRecord {
    record_in(name, None, AgentRole::Worker, TrustLevel::Registered, card)
}

/// A version-1 record with every attribute chosen.
pub fn record_in(
    name: &str,
    org: Option<&str>,
    role: AgentRole,
    trust: TrustLevel,
    card: Value,
) -> AgentRecord {
    let (id, org) = match org {
        Some(org) => (
            AgentId::external(org, name).expect("valid id"),
            org.to_owned(),
        ),
        None => (
            AgentId::internal(name).expect("valid id"),
            "convergio.local".to_owned(),
        ),
    };
    let at = now();
    AgentRecord {
        id,
        name: name.to_owned(),
        org,
        role,
        upstreams: Upstream::from_card(&card),
        card,
        trust,
        version: 1,
        created_at: at,
        updated_at: at,
        deleted_at: None,
    }
}

/// A simple card with one skill.
pub fn simple_card(name: &str) -> Value {
    card(
        name,
        &format!("{name} does things"),
        &[("do", "Do things", &["general"])],
        "text/plain",
        "text/plain",
    )
}
