//! The retention pruner of `convergio serve` (issue 15): assembles
//! `convergio_gateway::retention::Pruner` over this deployment's database
//! (task routes, nonces, the audit chain, stored peer call outcomes,
//! expired memory items, and finished durable runs, whose journal the
//! gateway does not know, hence the adapter here).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_gateway::retention::{
    AuditRetention, MemoryRetention, NoncesRetention, PeerCallsRetention, Prunable, PruneError,
    Pruner, PushRetention, RetentionConfig, RetentionKind, StreamEventsRetention,
    TaskRoutesRetention,
};
use convergio_policy::AuditLog;
use convergio_registry::retention::RetentionStore;
use convergio_store::runs::RunStore;

/// Finished durable runs, pruned through the run journal.
struct RunsRetention(Arc<RunStore>);

fn runs_error(error: convergio_orchestrator::OrchestratorError) -> PruneError {
    PruneError {
        kind: RetentionKind::Runs.as_str(),
        source: Box::new(error),
    }
}

#[async_trait]
impl Prunable for RunsRetention {
    fn kind(&self) -> RetentionKind {
        RetentionKind::Runs
    }

    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError> {
        self.0
            .prune_finished(before, limit)
            .await
            .map_err(runs_error)
    }

    async fn count(&self) -> Result<u64, PruneError> {
        self.0.count_runs().await.map_err(runs_error)
    }
}

/// The pruner over every kind in the database `db`; not started yet.
pub fn pruner(
    config: &RetentionConfig,
    db: &convergio_store::Db,
    audit: AuditLog,
    journal: Arc<RunStore>,
    memory: Arc<convergio_memory::Memory>,
) -> Pruner {
    let store: Arc<dyn RetentionStore> = Arc::new(convergio_store::registry::Retention::new(db));
    Pruner::new(config.clone(), Some(store.clone()))
        .with_target(Arc::new(TaskRoutesRetention(store.clone())))
        .with_target(Arc::new(NoncesRetention(store)))
        .with_target(Arc::new(AuditRetention(audit)))
        .with_target(Arc::new(RunsRetention(journal)))
        .with_target(Arc::new(PeerCallsRetention(Arc::new(
            convergio_store::registry::PeerCalls::new(db),
        ))))
        .with_target(Arc::new(MemoryRetention(memory)))
        .with_target(Arc::new(StreamEventsRetention(Arc::new(
            convergio_store::registry::StreamEvents::new(db),
        ))))
        .with_target(Arc::new(PushRetention(Arc::new(
            convergio_store::registry::PushTables::new(db),
        ))))
}

/// One line for the start-up banner.
pub fn describe(config: &RetentionConfig) -> String {
    if !config.enabled {
        return "off".to_owned();
    }
    let window = |kind: RetentionKind| {
        let settings = config.kind(kind);
        let age = settings.max_age_seconds.map(|seconds| match seconds {
            seconds if seconds > 0 && seconds % 86_400 == 0 => format!("{}d", seconds / 86_400),
            seconds => format!("{seconds}s"),
        });
        let rows = settings.max_rows.map(|rows| format!("{rows} rows"));
        let parts: Vec<String> = age.into_iter().chain(rows).collect();
        if parts.is_empty() {
            format!("{} kept", kind.as_str())
        } else {
            format!("{} {}", kind.as_str(), parts.join(" or "))
        }
    };
    let kinds: Vec<String> = [
        RetentionKind::TaskRoutes,
        RetentionKind::Audit,
        RetentionKind::Runs,
    ]
    .into_iter()
    .map(window)
    .collect();
    format!(
        "{}, every {}s (retention:)",
        kinds.join(", "),
        config.interval_seconds
    )
}
