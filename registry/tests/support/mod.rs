//! Shared test support: fresh stores on both backends and record builders.
//!
//! PostgreSQL comes from `CONVERGIO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every test gets its own
//! database (`convergio_tests::postgres::TestDatabase`), dropped with the
//! [`Backend`] even when the test panics, so tests run in parallel and leave
//! nothing behind. If PostgreSQL is down the test fails and says so.

#![allow(dead_code)]

use std::sync::Arc;

use convergio_registry::model::{now, AgentRecord, Upstream};
use convergio_registry::{connect, Store};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use convergio_tests::postgres::TestDatabase;
use serde_json::{json, Value};

/// A fresh store and what it takes to clean it up.
pub struct Backend {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The store's URL.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    /// Dropped with the backend, also when the test panics.
    database: Option<TestDatabase>,
}

impl Backend {
    /// Closes the store, then drops the test database or removes the SQLite
    /// directory (dropping the backend does the same, in the same order).
    pub async fn finish(self) {
        drop(self.store);
        drop(self.dir);
        drop(self.database);
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
        database: None,
    }
}

/// A fresh PostgreSQL store in a database of its own.
pub async fn postgres() -> Backend {
    let database = TestDatabase::create("convergio_t").await;
    let url = database.url().to_owned();
    let store = connect(&url)
        .await
        .expect("PostgreSQL store connects and migrates");
    Backend {
        store,
        url,
        dir: None,
        database: Some(database),
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
