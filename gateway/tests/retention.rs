//! The retention pruner (issue 15) over one SQLite database, as `convergio
//! serve` runs it: a pass deletes task routes and audit records older than
//! their windows in bounded batches (and stored peer call outcomes, issue
//! 18), keeps younger ones, leaves the audit
//! chain verifying from its checkpoint, expired memory items go (issue
//! 20), and `/metrics` shows rows pruned per kind and the database's size.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use chrono::{Duration, Utc};
use convergio_gateway::app::{build_router, AppConfig};
use convergio_gateway::retention::{
    AuditRetention, KindRetention, MemoryRetention, PeerCallsRetention, Pruner, RetentionConfig,
    RetentionKind, StreamEventsRetention, TaskRoutesRetention,
};
use convergio_gateway::runs_api::GraphsConfig;
use convergio_memory::embed::{EmbeddingKey, KeySource, ProviderEmbedders};
use convergio_memory::{Memory, NamespaceSpec, Retention};
use convergio_policy::{AuditEntry, AuditLog};
use convergio_registry::model::TaskRoute;
use convergio_registry::peer_calls::{PeerCallKey, PeerCallStore};
use convergio_registry::retention::RetentionStore;
use convergio_registry::stream_events::StreamEventStore;
use convergio_registry::{Registry, RegistryConfig, Store};
use convergio_schemas::{AgentId, AuthMethod, Principal};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

/// Structured memory embeds nothing: no keys are ever asked for.
struct NoKeys;

#[async_trait::async_trait]
impl KeySource for NoKeys {
    async fn secret(
        &self,
        _org: &str,
        _name: &str,
    ) -> convergio_memory::Result<Option<EmbeddingKey>> {
        Ok(None)
    }
}

fn route(task_id: &str, age_minutes: i64) -> TaskRoute {
    let at = Utc::now() - Duration::minutes(age_minutes);
    TaskRoute {
        task_id: task_id.to_owned(),
        context_id: None,
        agent_id: AgentId::internal("echo").expect("valid id"),
        owner: "alice".to_owned(),
        created_at: at,
        updated_at: at,
    }
}

fn audit_entry(age_minutes: i64) -> AuditEntry {
    let principal = Principal {
        subject: "alice".to_owned(),
        org: None,
        scopes: Vec::new(),
        method: AuthMethod::ApiKey,
    };
    let mut entry = AuditEntry::change(None, &principal, "send_message", "agent:echo", json!({}));
    entry.at = Utc::now() - Duration::minutes(age_minutes);
    entry
}

#[tokio::test]
async fn a_pass_prunes_old_rows_in_batches_and_metrics_show_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let store: Arc<dyn Store> = agents;
    let audit = AuditLog::new(Arc::new(convergio_store::policy::PolicyStore::new(
        db.clone(),
    )));
    for index in 0..5 {
        store
            .put_task_route(&route(&format!("old-{index}"), 120))
            .await
            .expect("put");
    }
    store.put_task_route(&route("young", 1)).await.expect("put");
    let entries: Vec<AuditEntry> = [120, 120, 120, 120, 1]
        .into_iter()
        .map(audit_entry)
        .collect();
    audit.append_batch(&entries).await.expect("append");
    let peer_calls = Arc::new(convergio_store::registry::PeerCalls::new(&db));
    for (key, age_minutes) in [("old", 120), ("young", 1)] {
        let call = PeerCallKey {
            peer: "a.example".to_owned(),
            agent: "echo".to_owned(),
            subject: "alice".to_owned(),
            key: key.to_owned(),
        };
        let stored_at = (Utc::now() - Duration::minutes(age_minutes)).timestamp();
        peer_calls
            .remember_outcome(&call, &json!({"message": {}}), stored_at)
            .await
            .expect("stored");
    }

    // Stream events: three of a task two hours ago, one of another now.
    let stream_events = Arc::new(convergio_store::registry::StreamEvents::new(&db));
    for (task, age_minutes) in [("old", 120), ("old", 120), ("old", 120), ("young", 1)] {
        let at = (Utc::now() - Duration::minutes(age_minutes)).timestamp();
        stream_events
            .append_event(task, &json!({"statusUpdate": {"taskId": task}}), at)
            .await
            .expect("recorded");
    }

    // Memory: one item with a one-minute TTL, one without.
    let memory = Arc::new(Memory::new(
        Arc::new(convergio_store::memory::MemoryTables::new(&db)),
        Arc::new(ProviderEmbedders::new(
            Arc::new(NoKeys),
            reqwest::Client::new(),
            Arc::new(convergio_memory::local::LocalModels::none()),
        )),
    ));
    let minute = NamespaceSpec {
        retention: Retention {
            ttl_seconds: Some(60),
            ..Retention::default()
        },
        ..NamespaceSpec::default()
    };
    for (name, spec) in [("minute", minute), ("kept", NamespaceSpec::default())] {
        let namespace = memory
            .create_namespace("acme.example", name, spec)
            .await
            .expect("namespace");
        memory
            .put(&namespace, "note", json!("remember"), None)
            .await
            .expect("item");
    }

    let retention: Arc<dyn RetentionStore> =
        Arc::new(convergio_store::registry::Retention::new(&db));
    let hour = KindRetention {
        max_age_seconds: Some(3600),
        max_rows: None,
    };
    let config = RetentionConfig {
        batch_rows: 2,
        pause_ms: 0,
        task_routes: hour.clone(),
        audit: hour.clone(),
        peer_calls: hour.clone(),
        stream_events: hour,
        ..RetentionConfig::default()
    };
    // The pass runs two minutes from now: past the memory item's TTL,
    // and moving no other row across its hour.
    let pruner = Pruner::new(config, Some(retention.clone()))
        .with_target(Arc::new(TaskRoutesRetention(retention.clone())))
        .with_target(Arc::new(AuditRetention(audit.clone())))
        .with_target(Arc::new(PeerCallsRetention(peer_calls.clone())))
        .with_target(Arc::new(MemoryRetention(memory.clone())))
        .with_target(Arc::new(StreamEventsRetention(stream_events.clone())))
        .with_clock(Arc::new(|| Utc::now() + Duration::minutes(2)));
    let metrics = pruner.metrics();
    let report = pruner.run_pass().await;
    assert_eq!(report.pruned[0], 5, "{report:?}");
    assert_eq!(report.pruned[1], 4, "{report:?}");
    assert_eq!(report.pruned[4], 1, "{report:?}");
    assert_eq!(report.pruned[5], 1, "{report:?}");
    assert_eq!(report.pruned[6], 3, "{report:?}");
    assert_eq!(stream_events.count_events().await.expect("count"), 1);
    assert_eq!(stream_events.last_seq("young").await.expect("last"), 1);
    assert_eq!(
        memory
            .namespaces("acme.example")
            .await
            .expect("listed")
            .len(),
        2
    );
    let kept = memory.namespace("kept").await.expect("namespace");
    assert!(memory.get(&kept, "note").await.is_ok(), "no TTL: kept");
    assert_eq!(peer_calls.count_outcomes().await.expect("count"), 1);
    assert!(report.database_bytes > 0);
    assert!(store.get_task_route("old-0").await.expect("get").is_none());
    assert!(store.get_task_route("young").await.expect("get").is_some());
    let verified = audit.verify().await.expect("the chain verifies");
    assert_eq!((verified.first_seq, verified.last_seq), (5, 5));
    assert_eq!(metrics.pruned(RetentionKind::TaskRoutes), 5);
    assert_eq!(
        pruner.run_pass().await.pruned,
        [0, 0, 0, 0, 0, 0, 0, 0],
        "nothing left"
    );

    let registry = Registry::new(
        store,
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::none()),
    );
    let router = build_router(
        registry,
        AppConfig {
            graphs: GraphsConfig {
                retention_metrics: Some(metrics),
                ..GraphsConfig::default()
            },
            ..AppConfig::default()
        },
    );
    // `/metrics` is for operators and administrators (issue 14).
    let mut request = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    request
        .extensions_mut()
        .insert(convergio_gateway::layers::admin_principal());
    let response = router.oneshot(request).await.expect("answer");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(
        text.contains("convergio_retention_pruned_rows_total{kind=\"task_routes\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("convergio_retention_pruned_rows_total{kind=\"audit\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("convergio_retention_passes_total 2"),
        "{text}"
    );
    let size: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("convergio_database_size_bytes{backend=\"sqlite\"} "))
        .and_then(|value| value.parse().ok())
        .expect("the database size is shown");
    assert!(size > 0, "{text}");
}
