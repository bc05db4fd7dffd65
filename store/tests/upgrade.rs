//! Upgrading in place (issue #16): a database written by the release before
//! the storage crate (`fixtures/release-0.1-*.sql`, see the README there) is
//! loaded as that release left it, opened with today's `Db::open` — which
//! applies migrations 0008 and 0009 over tables that already exist — and
//! every kind of row is read back through today's stores.

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
