//! Model agents' tables (issue 17) on SQLite and PostgreSQL
//! (`CONVERGIO_TEST_POSTGRES_URL`, a fresh database per test), each case run
//! on both through `convergio_tests::on_both_backends!`: declarations
//! (versions, one owner per name), sealed secrets (the stored bytes never
//! hold the value), conversations by context shared by two pools (two
//! replicas) and appended to concurrently, and the usage ledger under
//! concurrent writers.

use std::sync::Arc;

use convergio_auth::{SecretValue, SecretsKey};
use convergio_registry::model_agents::{
    ConversationKey, ConversationStore, ModelAgentStore, SealedSecretRow, SecretStore, UsageStore,
    UsageTotals,
};
use convergio_registry::RegistryError;
use convergio_store::models::ModelStore;
use convergio_store::{Db, DbConfig};
use serde_json::json;

/// A fresh database, by URL; each store opens its own pool (a replica).
struct Harness {
    url: String,
}

async fn open(url: &str) -> Harness {
    Harness {
        url: url.to_owned(),
    }
}

impl Harness {
    async fn store(&self) -> ModelStore {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        ModelStore::new(&db)
    }

    async fn agents(&self) -> Arc<dyn ModelAgentStore> {
        Arc::new(self.store().await)
    }

    async fn secrets(&self) -> Arc<dyn SecretStore> {
        Arc::new(self.store().await)
    }

    async fn conversations(&self) -> Arc<dyn ConversationStore> {
        Arc::new(self.store().await)
    }

    async fn usage(&self) -> Arc<dyn UsageStore> {
        Arc::new(self.store().await)
    }

    /// Every byte of every `secrets` row, as stored.
    async fn raw_secret_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            let rows = sqlx::query_as("SELECT org, name, nonce, ciphertext FROM secrets")
                .fetch_all(&pool)
                .await
                .expect("reads");
            pool.close().await;
            rows
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            let rows = sqlx::query_as("SELECT org, name, nonce, ciphertext FROM secrets")
                .fetch_all(&pool)
                .await
                .expect("reads");
            pool.close().await;
            rows
        };
        for (org, name, nonce, ciphertext) in rows {
            bytes.extend(org.into_bytes());
            bytes.extend(name.into_bytes());
            bytes.extend(nonce);
            bytes.extend(ciphertext);
        }
        bytes
    }
}

fn spec(name: &str, model: &str) -> serde_json::Value {
    json!({
        "apiVersion": "convergio/v1",
        "kind": "ModelAgent",
        "name": name,
        "provider": "openai",
        "model": model
    })
}

async fn declarations_are_versioned_and_owned_by_one_org(harness: Harness) {
    let store = harness.agents().await;
    let created = store
        .put("acme.example", "writer", &spec("writer", "m1"), 100)
        .await
        .expect("creates");
    assert_eq!(created.version, 1);
    let updated = store
        .put("acme.example", "writer", &spec("writer", "m2"), 200)
        .await
        .expect("updates");
    assert_eq!(updated.version, 2);
    let taken = store
        .put("other.example", "writer", &spec("writer", "m3"), 300)
        .await;
    assert!(
        matches!(taken, Err(RegistryError::AgentExists { ref agent_id }) if agent_id == "writer"),
        "{taken:?}"
    );
    let read = store.get("writer").await.expect("reads").expect("exists");
    assert_eq!(read.org, "acme.example");
    assert_eq!(read.version, 2);
    assert_eq!(read.updated_at, 200);
    assert_eq!(read.spec["model"], json!("m2"));
    store
        .put("other.example", "reviewer", &spec("reviewer", "m"), 1)
        .await
        .expect("creates");
    let names = |rows: Vec<convergio_registry::model_agents::ModelAgentRow>| {
        rows.into_iter().map(|row| row.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list(Some("acme.example")).await.expect("lists")),
        vec!["writer"]
    );
    assert_eq!(
        names(store.list(None).await.expect("lists")),
        vec!["reviewer", "writer"]
    );
    assert!(!store.delete("other.example", "writer").await.expect("runs"));
    assert!(store.delete("acme.example", "writer").await.expect("runs"));
    assert!(store.get("writer").await.expect("reads").is_none());
    let again = store
        .put("other.example", "writer", &spec("writer", "m"), 400)
        .await
        .expect("a deleted name is free again");
    assert_eq!(again.version, 1);
}

async fn secrets_are_stored_sealed_and_replaced(harness: Harness) {
    let store = harness.secrets().await;
    let (key, _) = SecretsKey::generate().expect("random works");
    let value = SecretValue::new("sk-model-decl-store-test-0123456789");
    let sealed = key.seal("acme.example", "openai", &value).expect("seals");
    store
        .put(&SealedSecretRow {
            org: "acme.example".to_owned(),
            name: "openai".to_owned(),
            nonce: sealed.nonce.clone(),
            ciphertext: sealed.ciphertext.clone(),
            updated_at: 10,
        })
        .await
        .expect("stores");
    let raw = harness.raw_secret_bytes().await;
    assert!(
        !raw.windows(value.expose().len())
            .any(|window| window == value.expose().as_bytes()),
        "the stored bytes hold the value"
    );
    let row = store
        .get("acme.example", "openai")
        .await
        .expect("reads")
        .expect("exists");
    let opened = key
        .open(
            "acme.example",
            "openai",
            &convergio_auth::secret_box::Sealed {
                nonce: row.nonce,
                ciphertext: row.ciphertext,
            },
        )
        .expect("opens");
    assert_eq!(opened, value);
    assert!(store
        .get("other.example", "openai")
        .await
        .expect("reads")
        .is_none());
    let rotated = key
        .seal("acme.example", "openai", &SecretValue::new("sk-rotated"))
        .expect("seals");
    store
        .put(&SealedSecretRow {
            org: "acme.example".to_owned(),
            name: "openai".to_owned(),
            nonce: rotated.nonce,
            ciphertext: rotated.ciphertext.clone(),
            updated_at: 20,
        })
        .await
        .expect("replaces");
    let listed = store.list("acme.example").await.expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "openai");
    assert_eq!(listed[0].updated_at, 20);
    assert!(store.list("other.example").await.expect("lists").is_empty());
    assert!(store.delete("acme.example", "openai").await.expect("runs"));
    assert!(!store.delete("acme.example", "openai").await.expect("runs"));
}

async fn conversations_continue_on_another_replica(harness: Harness) {
    let first = harness.conversations().await;
    let second = harness.conversations().await;
    let key = ConversationKey {
        org: "acme.example",
        agent: "writer",
        context_id: "ctx-1",
    };
    first
        .append(
            key,
            &[
                json!({"role": "user", "text": "one"}),
                json!({"role": "assistant", "text": "two"}),
            ],
        )
        .await
        .expect("appends");
    second
        .append(key, &[json!({"role": "user", "text": "three"})])
        .await
        .expect("appends on the other replica");
    let loaded = first.load(key, 100).await.expect("loads");
    let texts: Vec<&str> = loaded
        .iter()
        .filter_map(|message| message["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    let newest = second.load(key, 2).await.expect("loads");
    assert_eq!(newest[0]["text"], json!("two"));
    assert_eq!(newest[1]["text"], json!("three"));
    let other = ConversationKey {
        context_id: "ctx-2",
        ..key
    };
    assert!(first.load(other, 100).await.expect("loads").is_empty());
    let other_org = ConversationKey {
        org: "other.example",
        ..key
    };
    assert!(first.load(other_org, 100).await.expect("loads").is_empty());
}

async fn concurrent_appends_to_one_conversation_all_land_in_turn(harness: Harness) {
    // Two replicas, eight appenders each of a question and its answer: a
    // deferred SQLite transaction that read the last number first failed
    // with "database is locked", and on PostgreSQL two appenders took the
    // same number.
    let replicas = [harness.conversations().await, harness.conversations().await];
    let key = ConversationKey {
        org: "acme.example",
        agent: "writer",
        context_id: "busy",
    };
    let mut appenders = Vec::new();
    for turn in 0..8 {
        let store = replicas[turn % 2].clone();
        appenders.push(tokio::spawn(async move {
            store
                .append(
                    key,
                    &[
                        json!({"role": "user", "text": format!("q{turn}")}),
                        json!({"role": "assistant", "text": format!("a{turn}")}),
                    ],
                )
                .await
        }));
    }
    for appender in appenders {
        appender.await.expect("appender finishes").expect("appends");
    }
    let loaded = replicas[0].load(key, 100).await.expect("loads");
    assert_eq!(loaded.len(), 16);
    // Each append's pair is adjacent: no interleaving.
    for pair in loaded.chunks(2) {
        let question = pair[0]["text"].as_str().expect("text");
        assert_eq!(
            pair[1]["text"],
            json!(question.replace('q', "a")),
            "{loaded:?}"
        );
    }
}

async fn usage_adds_up_under_concurrent_writers(harness: Harness) {
    let store = harness.usage().await;
    let mut writers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..5 {
                store
                    .add(
                        "acme.example",
                        "2026-12-03",
                        UsageTotals {
                            tokens_in: 10,
                            tokens_out: 2,
                            cost_micros: 7,
                        },
                    )
                    .await
                    .expect("adds");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finishes");
    }
    let day = store
        .day("acme.example", "2026-12-03")
        .await
        .expect("reads");
    assert_eq!(
        day,
        UsageTotals {
            tokens_in: 400,
            tokens_out: 80,
            cost_micros: 280
        }
    );
    assert_eq!(
        store
            .day("acme.example", "2026-12-04")
            .await
            .expect("reads"),
        UsageTotals::default()
    );
    store
        .add(
            "other.example",
            "2026-12-03",
            UsageTotals {
                tokens_in: 1,
                tokens_out: 1,
                cost_micros: 1,
            },
        )
        .await
        .expect("adds");
    let all = store.all_on("2026-12-03").await.expect("reads");
    let orgs: Vec<&str> = all.iter().map(|(org, _)| org.as_str()).collect();
    assert_eq!(orgs, vec!["acme.example", "other.example"]);
}

convergio_tests::on_both_backends!(crate::open;
    declarations_are_versioned_and_owned_by_one_org,
    secrets_are_stored_sealed_and_replaced,
    conversations_continue_on_another_replica,
    concurrent_appends_to_one_conversation_all_land_in_turn,
    usage_adds_up_under_concurrent_writers,
);
