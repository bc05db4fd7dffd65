//! Stored plugins' tables (issue 21) on SQLite and PostgreSQL
//! (`CONVERGIO_TEST_POSTGRES_URL`, a fresh database per test), each case run
//! on both through `convergio_tests::on_both_backends!`: versions numbered
//! per plugin with their bytes and hashes, one owner and one kind per name,
//! the cheap "latest" row two replicas (two pools) poll, each version's
//! grants, and deletion.

use convergio_registry::plugins::{NewPluginVersion, PluginKind, PluginStore};
use convergio_registry::RegistryError;
use convergio_store::plugins::SqlPluginStore;
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
    async fn store(&self) -> SqlPluginStore {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        SqlPluginStore::new(&db)
    }
}

fn version<'a>(
    org: &'a str,
    name: &'a str,
    kind: PluginKind,
    module: &'a [u8],
    sha256: &'a str,
) -> NewPluginVersion<'a> {
    NewPluginVersion {
        org,
        name,
        kind,
        module,
        sha256,
        signature: None,
        signed_by: None,
        declaration: None,
        grants: &[],
        uploaded_by: "admin",
        at: 1_700_000_000,
    }
}

async fn versions_are_numbered_and_every_replica_sees_the_newest(harness: Harness) {
    let first = harness.store().await;
    let second = harness.store().await;
    assert!(first.latest("words").await.expect("reads").is_none());
    let v1 = first
        .put_version(&version(
            "acme.example",
            "words",
            PluginKind::Guardrail,
            b"one",
            "aa",
        ))
        .await
        .expect("stores v1");
    assert_eq!(v1.version, 1);
    let latest = second
        .latest("words")
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (latest.kind, latest.version, latest.sha256.as_str()),
        (PluginKind::Guardrail, 1, "aa")
    );
    let declaration = json!({"description": "two"});
    let v2 = second
        .put_version(&NewPluginVersion {
            signature: Some("sig"),
            signed_by: Some("kid-1"),
            declaration: Some(&declaration),
            ..version(
                "acme.example",
                "words",
                PluginKind::Guardrail,
                b"two!",
                "bb",
            )
        })
        .await
        .expect("stores v2");
    assert_eq!(v2.version, 2);
    let latest = first.latest("words").await.expect("reads").expect("exists");
    assert_eq!((latest.version, latest.sha256.as_str()), (2, "bb"));
    assert_eq!(
        first.module("words", 1).await.expect("reads").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        first.module("words", 2).await.expect("reads").as_deref(),
        Some(&b"two!"[..])
    );
    assert!(first.module("words", 3).await.expect("reads").is_none());
    let row = first.get("words").await.expect("reads").expect("exists");
    assert_eq!(row.org, "acme.example");
    assert_eq!(row.kind, PluginKind::Guardrail);
    assert_eq!(row.versions.len(), 2);
    let newest = row.latest().expect("a version");
    assert_eq!(newest.size, 4);
    assert_eq!(newest.signature.as_deref(), Some("sig"));
    assert_eq!(newest.signed_by.as_deref(), Some("kid-1"));
    assert_eq!(newest.declaration, Some(declaration));
    assert_eq!(row.versions[0].signature, None);
}

async fn a_name_has_one_owner_and_one_kind(harness: Harness) {
    let store = harness.store().await;
    store
        .put_version(&version("acme.example", "p", PluginKind::Agent, b"m", "aa"))
        .await
        .expect("stores");
    let taken = store
        .put_version(&version(
            "other.example",
            "p",
            PluginKind::Agent,
            b"m",
            "aa",
        ))
        .await;
    assert!(
        matches!(taken, Err(RegistryError::AgentExists { .. })),
        "{taken:?}"
    );
    let kind = store
        .put_version(&version(
            "acme.example",
            "p",
            PluginKind::Guardrail,
            b"m",
            "aa",
        ))
        .await;
    assert!(
        matches!(kind, Err(RegistryError::InvalidInput { .. })),
        "{kind:?}"
    );
    // Neither refusal stored a version.
    assert_eq!(
        store
            .get("p")
            .await
            .expect("reads")
            .expect("exists")
            .versions
            .len(),
        1
    );
    store
        .put_version(&version(
            "acme.example",
            "q",
            PluginKind::Guardrail,
            b"m",
            "aa",
        ))
        .await
        .expect("stores");
    store
        .put_version(&version(
            "other.example",
            "r",
            PluginKind::Guardrail,
            b"m",
            "aa",
        ))
        .await
        .expect("stores");
    let names = |rows: Vec<convergio_registry::plugins::PluginRow>| {
        rows.into_iter().map(|row| row.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list(Some("acme.example")).await.expect("lists")),
        ["p", "q"]
    );
    assert_eq!(
        names(store.list(None).await.expect("lists")),
        ["p", "q", "r"]
    );
}

async fn deleting_removes_every_version(harness: Harness) {
    let store = harness.store().await;
    for module in [&b"a"[..], b"b"] {
        store
            .put_version(&version(
                "acme.example",
                "gone",
                PluginKind::Guardrail,
                module,
                "aa",
            ))
            .await
            .expect("stores");
    }
    assert!(!store
        .delete("other.example", "gone")
        .await
        .expect("deletes"));
    assert!(store.delete("acme.example", "gone").await.expect("deletes"));
    assert!(store.get("gone").await.expect("reads").is_none());
    assert!(store.latest("gone").await.expect("reads").is_none());
    assert!(store.module("gone", 1).await.expect("reads").is_none());
    // Uploaded again, it starts at 1.
    let again = store
        .put_version(&version(
            "other.example",
            "gone",
            PluginKind::Agent,
            b"c",
            "cc",
        ))
        .await
        .expect("stores");
    assert_eq!(again.version, 1);
}

/// Each version keeps the grants it was uploaded with, read back by
/// another replica (another pool); a version without any reads none.
async fn grants_round_trip_per_version(harness: Harness) {
    let first = harness.store().await;
    let second = harness.store().await;
    let granted = ["clock".to_owned(), "random".to_owned()];
    let stored = first
        .put_version(&NewPluginVersion {
            grants: &granted,
            ..version("acme.example", "timer", PluginKind::Agent, b"one", "aa")
        })
        .await
        .expect("stores v1");
    assert_eq!(stored.grants, granted);
    second
        .put_version(&version(
            "acme.example",
            "timer",
            PluginKind::Agent,
            b"two",
            "bb",
        ))
        .await
        .expect("stores v2");
    let row = second.get("timer").await.expect("reads").expect("exists");
    let grants: Vec<&[String]> = row
        .versions
        .iter()
        .map(|version| version.grants.as_slice())
        .collect();
    assert_eq!(grants, [&granted[..], &[][..]]);
    let listed = first.list(Some("acme.example")).await.expect("lists");
    assert_eq!(listed[0].versions[0].grants, granted);
}

convergio_tests::on_both_backends!(
    super::open;
    versions_are_numbered_and_every_replica_sees_the_newest,
    a_name_has_one_owner_and_one_kind,
    deleting_removes_every_version,
    grants_round_trip_per_version,
);
