//! Upgrading in place (issue #16): a database written by the release before
//! the storage crate (`fixtures/release-0.1-*.sql`, see the README there) is
//! loaded as that release left it, opened with today's `Db::open` — which
//! applies migrations 0008 and 0009 over tables that already exist — and
//! every kind of row is read back through today's stores.
//!
//! And memory written before migration 0020 (issue 20: namespace revisions
//! and chunk change records): a database migrated only to 0019 holding a
//! vector namespace with a chunk is opened with today's `Db::open`; the
//! namespace starts at revision 0, its index builds from the rows, and a
//! write after the upgrade raises the revision and is followed.
//!
//! And plugins stored before migration 0021 (issue 21: capability
//! grants): a version written under 0020 reads back with no grants, and a
//! new version stores its own.

use std::sync::Arc;

use chrono::Utc;
use convergio_orchestrator::{GraphStore, RunFilter, RunJournal, RunStatus};
use convergio_policy::store::Store as PolicyStoreTrait;
use convergio_policy::AuditLog;
use convergio_registry::keys::ApiKeyStore;
use convergio_registry::peers::PeerStore;
use convergio_registry::Store;
use convergio_schemas::{AgentId, TrustLevel};
use convergio_store::policy::PolicyStore;
use convergio_store::registry::{AgentStore, ApiKeys, Peers};
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use sqlx::Connection;

const SQLITE_DUMP: &str = include_str!("fixtures/release-0.1-sqlite.sql");
const POSTGRES_DUMP: &str = include_str!("fixtures/release-0.1-postgres.sql");

/// Loads the old release's dump for the URL's backend; returns the URL.
async fn load_old_release(url: &str) -> String {
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .expect("the SQLite file opens");
        sqlx::raw_sql(SQLITE_DUMP)
            .execute(&mut connection)
            .await
            .expect("the SQLite dump loads");
        connection.close().await.expect("closes");
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .expect("the PostgreSQL database opens");
        sqlx::raw_sql(POSTGRES_DUMP)
            .execute(&mut connection)
            .await
            .expect("the PostgreSQL dump loads");
        connection.close().await.expect("closes");
    }
    url.to_owned()
}

convergio_tests::on_both_backends!(super::load_old_release; every_kind_of_row_reads_back_after_the_upgrade);

async fn every_kind_of_row_reads_back_after_the_upgrade(url: String) {
    let db = Db::open(&url, &DbConfig::default())
        .await
        .expect("today's migrations apply over the old release's tables");

    // Agents, versions, trust changes, a tombstone.
    let agents = AgentStore::open(&db).await.expect("the agent store opens");
    let weather = AgentId::internal("weather").expect("id");
    let record = agents.get(&weather, None).await.expect("weather reads");
    assert_eq!(record.trust, TrustLevel::Trusted);
    assert_eq!(record.card["name"], "Weather");
    let versions = agents.list_versions(&weather).await.expect("versions");
    assert_eq!(versions.len(), 2, "registration, then the trust change");
    let history = agents.trust_history(&weather).await.expect("trust history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "reviewed by the platform team");
    let translator = AgentId::internal("translator").expect("id");
    let tombstone = agents.get(&translator, None).await.expect("tombstone");
    assert!(tombstone.deleted_at.is_some(), "deregistration stays soft");

    // Task and context routes: the message sent to echo.
    let echo = AgentId::internal("echo").expect("id");
    let routes = agents
        .list_task_routes("anonymous", Some(&echo), 100, None)
        .await
        .expect("task routes");
    assert!(
        routes
            .items
            .iter()
            .any(|route| route.context_id.as_deref() == Some("fixture-context")),
        "{:?}",
        routes.items
    );
    let owner = agents
        .claim_context(&echo, "fixture-context", "someone-else", Utc::now())
        .await
        .expect("context claim");
    assert_eq!(owner, "anonymous", "the old owner keeps the context");

    // API keys, peers and their nonces.
    let keys = ApiKeys::new(&db).list().await.expect("api keys");
    assert!(keys.iter().any(|key| key.subject == "fixture-client"));
    let peers = Peers::new(&db);
    let peer = peers
        .get("partner.example")
        .await
        .expect("peer reads")
        .expect("the peer is there");
    assert_eq!(peer.base_url, "https://partner.example");
    assert_eq!(peer.keys.len(), 1);
    let replayed = peers
        .remember_nonce("partner.example", "fixture-nonce-1", 4_102_444_800)
        .await
        .expect("nonce check");
    assert!(!replayed, "the old release's nonce still refuses a replay");

    // Policy versions and the audit chain, which still verifies.
    let policy: Arc<dyn PolicyStoreTrait> = Arc::new(PolicyStore::new(db.clone()));
    let versions = policy.list_versions().await.expect("policy versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(policy.active_version().await.expect("active"), Some(2));
    let chain = AuditLog::new(policy.clone())
        .verify()
        .await
        .expect("the old chain verifies");
    assert!(chain.records >= 30, "{chain:?}");

    // A checkpointed run with its steps and named checkpoint, a stored graph.
    let runs = RunStore::open(db.clone(), RunStoreConfig::default());
    let listed = runs
        .list_runs(&RunFilter {
            owner: "admin".to_owned(),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .expect("runs list");
    assert_eq!(listed.len(), 1);
    let run = runs
        .load(listed[0].run_id, None)
        .await
        .expect("the run loads");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(!run.steps.is_empty());
    let checkpoints = runs
        .checkpoints(listed[0].run_id)
        .await
        .expect("checkpoints");
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].name, "reviewed");
    let graph = runs
        .get("", "sequential_pipeline", None)
        .await
        .expect("graph reads")
        .expect("the stored graph is there");
    assert_eq!(graph.summary.version, 1);
    db.close().await;
}

mod memory_before_revisions {
    use std::sync::Arc;

    use async_trait::async_trait;
    use convergio_memory::embed::{Embedder, Embedders};
    use convergio_memory::store::PutItem;
    use convergio_memory::{
        ChangeOp, EmbeddingSpec, FollowReport, Memory, MemoryError, MemoryStore, NamespaceKind,
        NamespaceSpec, NewChunk, Revision,
    };
    use convergio_store::memory::MemoryTables;
    use convergio_store::{Db, DbConfig};
    use serde_json::json;

    /// The last migration before revisions.
    const BEFORE: i64 = 19;
    const CREATED_AT: i64 = 1_700_000_000;

    /// Nothing here embeds: the index is built from stored vectors.
    struct NoEmbedders;

    #[async_trait]
    impl Embedders for NoEmbedders {
        async fn embedder(
            &self,
            _org: &str,
            _spec: &EmbeddingSpec,
        ) -> convergio_memory::Result<Arc<dyn Embedder>> {
            Err(MemoryError::invalid("no embedding in this test"))
        }
    }

    fn spec() -> NamespaceSpec {
        NamespaceSpec {
            kind: NamespaceKind::Vector,
            embedding: Some(EmbeddingSpec::Openai {
                base_url: "http://127.0.0.1:9/v1".to_owned(),
                model: "m".to_owned(),
                api_key: "secret:k".to_owned(),
                dimensions: 4,
            }),
            ..NamespaceSpec::default()
        }
    }

    /// Migrates the database at `url` to 0019 only and writes a vector
    /// namespace, an item and its chunk as that schema held them.
    async fn write_before_0020(url: &str) -> String {
        let spec = serde_json::to_string(&spec()).expect("a declaration");
        let rows = |vector: &str| {
            format!(
                "INSERT INTO memory_namespaces (name, org, kind, spec, created_at, agent) \
                 VALUES ('kb', 'acme.example', 'vector', '{spec}', {CREATED_AT}, NULL); \
                 INSERT INTO memory_items (namespace, key, value, version, updated_at, expires_at) \
                 VALUES ('kb', 'doc', '{{\"text\":\"old\"}}', 1, {CREATED_AT}, NULL); \
                 INSERT INTO memory_chunks (namespace, key, seq, text, metadata, vector) \
                 VALUES ('kb', 'doc', 0, 'old', '{{}}', {vector});"
            )
        };
        // [1, 0, 0, 0] as little-endian f32s.
        super::write_at(url, BEFORE, rows, "0000803f000000000000000000000000").await
    }

    convergio_tests::on_both_backends!(super::write_before_0020; memory_written_before_revisions_is_followed_after_the_upgrade);

    async fn memory_written_before_revisions_is_followed_after_the_upgrade(url: String) {
        let db = Db::open(&url, &DbConfig::default())
            .await
            .expect("migration 0020 applies over memory written before it");
        let tables = Arc::new(MemoryTables::new(&db));
        assert_eq!(
            tables.revision("kb").await.expect("read"),
            Some(Revision {
                created_at: CREATED_AT,
                revision: 0
            })
        );
        let memory = Memory::new(tables.clone(), Arc::new(NoEmbedders));
        assert_eq!(memory.load_indexes().await.expect("built"), 1);
        assert_eq!(
            memory.index().revisions(),
            vec![(
                "kb".to_owned(),
                Some(Revision {
                    created_at: CREATED_AT,
                    revision: 0
                })
            )]
        );

        // A write after the upgrade (through another handle, as another
        // replica would) raises the revision and records its changes.
        let written = tables
            .put_item(PutItem {
                namespace: "kb",
                key: "doc",
                value: &json!({"text": "new"}),
                expected_version: Some(1),
                at: CREATED_AT + 10,
                expires_at: None,
                max_items: None,
                chunks: &[NewChunk {
                    seq: 0,
                    text: "new".to_owned(),
                    metadata: json!({}),
                    vector: vec![0.0, 1.0, 0.0, 0.0],
                }],
            })
            .await
            .expect("written");
        assert_eq!(written.revision, Some(1));
        let changes = tables.changes("kb", 0, 1).await.expect("changes");
        let ops: Vec<ChangeOp> = changes.iter().map(|change| change.op).collect();
        assert_eq!(ops.len(), 2, "{changes:?}");
        assert!(ops.contains(&ChangeOp::Add) && ops.contains(&ChangeOp::Remove));
        assert_eq!(
            memory.follow_changes().await.expect("followed"),
            FollowReport {
                followed: 1,
                ..FollowReport::default()
            }
        );
        assert_eq!(memory.index().len("kb"), 1);
        let nearest = memory
            .index()
            .search("kb", &[0.0, 1.0, 0.0, 0.0], 1, 10, None);
        assert_eq!(
            nearest.first().map(|hit| hit.id),
            written.chunk_ids.first().copied()
        );
        db.close().await;
    }
}

mod plugins_before_grants {

    use convergio_registry::plugins::{NewPluginVersion, PluginKind, PluginStore};
    use convergio_store::plugins::SqlPluginStore;
    use convergio_store::{Db, DbConfig};

    /// The last migration before grants.
    const BEFORE: i64 = 20;

    /// Migrates the database at `url` to 0020 only and stores a plugin
    /// version as that schema held it.
    async fn write_before_0021(url: &str) -> String {
        let rows = |module: &str| {
            format!(
                "INSERT INTO plugins (name, org, kind, latest, sha256, updated_at) \
                 VALUES ('words', 'acme.example', 'guardrail', 1, 'aa', 1700000000); \
                 INSERT INTO plugin_versions (name, version, sha256, size, module, signature, \
                 signed_by, declaration, uploaded_by, uploaded_at) \
                 VALUES ('words', 1, 'aa', 3, {module}, NULL, NULL, NULL, 'admin', 1700000000);"
            )
        };
        // b"one"
        super::write_at(url, BEFORE, rows, "6f6e65").await
    }

    convergio_tests::on_both_backends!(super::write_before_0021; plugin_versions_stored_before_grants_read_back_with_none);

    async fn plugin_versions_stored_before_grants_read_back_with_none(url: String) {
        let db = Db::open(&url, &DbConfig::default())
            .await
            .expect("migration 0021 applies over plugins stored before it");
        let store = SqlPluginStore::new(&db);
        let row = store.get("words").await.expect("reads").expect("exists");
        assert_eq!(row.versions.len(), 1);
        assert!(row.versions[0].grants.is_empty(), "{row:?}");
        assert_eq!(
            store.module("words", 1).await.expect("reads").as_deref(),
            Some(&b"one"[..])
        );
        let granted = ["clock".to_owned()];
        let v2 = store
            .put_version(&NewPluginVersion {
                org: "acme.example",
                name: "words",
                kind: PluginKind::Guardrail,
                module: b"two",
                sha256: "bb",
                signature: None,
                signed_by: None,
                declaration: None,
                grants: &granted,
                uploaded_by: "admin",
                at: 1_700_000_100,
            })
            .await
            .expect("a new version stores");
        assert_eq!(v2.version, 2);
        let row = store.get("words").await.expect("reads").expect("exists");
        assert_eq!(row.versions[1].grants, granted);
        db.close().await;
    }
}

/// Migrates the database at `url` up to migration `last` only, then runs
/// the statements `rows` makes, given the hex bytes `blob` as that
/// backend's literal (`X'…'` or `'\\x…'::bytea`): a database as an older
/// release left it. Answers `url`.
async fn write_at(url: &str, last: i64, rows: impl Fn(&str) -> String, blob: &str) -> String {
    let before = |migrator: sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            migrator
                .migrations
                .iter()
                .filter(|migration| migration.version <= last)
                .cloned()
                .collect(),
        ),
        ..migrator
    };
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .expect("the SQLite file opens");
        before(sqlx::migrate!("migrations/sqlite"))
            .run(&mut connection)
            .await
            .expect("the older migrations apply");
        sqlx::raw_sql(&rows(&format!("X'{blob}'")))
            .execute(&mut connection)
            .await
            .expect("the rows load");
        connection.close().await.expect("closes");
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .expect("the PostgreSQL database opens");
        before(sqlx::migrate!("migrations/postgres"))
            .run(&mut connection)
            .await
            .expect("the older migrations apply");
        sqlx::raw_sql(&rows(&format!("'\\x{blob}'::bytea")))
            .execute(&mut connection)
            .await
            .expect("the rows load");
        connection.close().await.expect("closes");
    }
    url.to_owned()
}
