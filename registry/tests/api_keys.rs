//! The API key table (issue 4) on SQLite and PostgreSQL alike: insert, read,
//! list oldest first, revoke once, and refuse a duplicate id as a conflict.

mod support;

use convergio_registry::keys::{ApiKeyRow, ApiKeyStore};
use convergio_schemas::ErrorKind;
use convergio_store::registry::ApiKeys;
use support::Backend;

fn row(id: &str, created_at: i64) -> ApiKeyRow {
    ApiKeyRow {
        id: id.to_owned(),
        secret_sha256: "ab".repeat(32),
        subject: format!("subject-{id}"),
        org: Some("acme.example".to_owned()),
        scopes: vec!["agents:call".to_owned(), "agents:read".to_owned()],
        created_at,
        expires_at: Some(created_at + 3600),
        revoked_at: None,
    }
}

async fn api_keys_round_trip(backend: Backend) {
    let keys = ApiKeys::new(&backend.db);
    assert!(keys.get("nope").await.expect("get").is_none());
    keys.insert(&row("b", 20)).await.expect("insert b");
    keys.insert(&row("a", 10)).await.expect("insert a");
    // Ids are unique; a taken one is a conflict, not an internal error.
    let taken = keys
        .insert(&row("a", 30))
        .await
        .expect_err("ids are unique");
    assert_eq!(taken.kind(), ErrorKind::Conflict, "{taken}");
    assert_eq!(keys.get("a").await.expect("get"), Some(row("a", 10)));
    let listed: Vec<String> = keys
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(listed, ["a", "b"]);
    assert!(keys.revoke("a", 99).await.expect("revoke"));
    assert!(!keys.revoke("a", 100).await.expect("revoke again"));
    assert!(!keys.revoke("nope", 100).await.expect("revoke unknown"));
    assert_eq!(
        keys.get("a")
            .await
            .expect("get")
            .and_then(|row| row.revoked_at),
        Some(99)
    );
}

convergio_tests::on_both_backends!(crate::support::open; api_keys_round_trip);
