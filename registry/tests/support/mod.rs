//! Shared test support: fresh stores on both backends and record builders.
//!
//! A store's database comes from `convergio_tests::db::TestPlace`: a SQLite
//! file in a temporary directory or a PostgreSQL database of its own
//! (`CONVERGIO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), removed with it even when the
//! test panics, so tests run in parallel and leave nothing behind. Suites
//! that run on both backends use `convergio_tests::on_both_backends!` with
//! [`open`] or [`open_store`]. If PostgreSQL is down the test fails and says so.

#![allow(dead_code)]

use std::sync::Arc;

use convergio_registry::model::{now, AgentRecord, Upstream};
use convergio_registry::Store;
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use convergio_store::registry::AgentStore;
use convergio_store::{Db, DbConfig};
use convergio_tests::db::TestPlace;
use serde_json::{json, Value};

/// A fresh store, its database and what it takes to clean it up.
pub struct Backend {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The database the store is built on, for the other registry stores.
    pub db: Db,
    /// The database's URL.
    pub url: String,
    /// Dropped after the store, also when the test panics.
    place: Option<TestPlace>,
}

impl Backend {
    /// Closes the store, then drops the test database or removes the SQLite
    /// directory (dropping the backend does the same, in the same order).
    pub async fn finish(self) {
        drop(self.store);
        self.db.close().await;
        drop(self.place);
    }
}

/// Opens the database at `url` (migrating it) and its agent store.
pub async fn open(url: &str) -> Backend {
    let db = Db::open(url, &DbConfig::default())
        .await
        .expect("the database opens and migrates");
    let store = AgentStore::open(&db).await.expect("the agent store opens");
    Backend {
        store: Arc::new(store),
        db,
        url: url.to_owned(),
        place: None,
    }
}

/// The agent store of the database at `url`.
pub async fn open_store(url: &str) -> Arc<dyn Store> {
    open(url).await.store
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Backend {
    let place = TestPlace::sqlite();
    let mut backend = open(place.url()).await;
    backend.place = Some(place);
    backend
}

/// A fresh PostgreSQL store in a database of its own.
pub async fn postgres() -> Backend {
    let place = TestPlace::postgres().await;
    let mut backend = open(place.url()).await;
    backend.place = Some(place);
    backend
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
