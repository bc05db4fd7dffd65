//! Retention (issue 15): the background pruner that keeps the tables which
//! grow with every call bounded by a configured window, and its metrics.
//!
//! Kinds ([`RetentionKind`]): task routes and peer nonces (the registry's
//! [`RetentionStore`]), audit records (the policy crate's chain, which
//! keeps a checkpoint so `audit verify` still verifies), and finished
//! durable runs (the storage crate's run journal; `convergio serve` plugs
//! it in as a [`Prunable`], since this crate does not depend on it), and the
//! stored outcomes of idempotent peer calls (issue 18, the registry's
//! `PeerCallStore`), and the recorded events of tasks' streams (issue 24,
//! its `StreamEventStore`); run events are held in memory per replica, bounded
//! by `GraphsConfig::max_retained_runs`, and stored as run steps, which go
//! with their run.
//!
//! **Traffic is not blocked:** every delete is one statement of at most
//! `batch_rows` rows (default 1,000, a few milliseconds of write lock), and
//! the pruner sleeps `pause_ms` between batches so queued writers get the
//! lock. After a pass it compacts (see the registry's
//! `store/retention_{sqlite,postgres}.rs` for what that means per backend)
//! and records the database's size. Several replicas may prune at once:
//! deletes are idempotent, and audit prunes serialise on the chain's lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_policy::AuditLog;
use convergio_registry::retention::RetentionStore;
use serde::{Deserialize, Serialize};

/// The error a [`Prunable`] reports: the store's own error, kept as the
/// source. Pruning runs in the background, so it is logged and counted
/// (`convergio_retention_errors_total`), never answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("retention of {kind} failed")]
pub struct PruneError {
    /// What was being pruned.
    pub kind: &'static str,
    /// The store's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// How many kinds there are.
const KINDS: usize = 8;

/// What retention applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionKind {
    /// A2A task routes (one per task a caller created).
    TaskRoutes,
    /// Audit records (two or more per call: decision and changes).
    Audit,
    /// Finished durable runs, with their steps and checkpoints.
    Runs,
    /// Nonces of accepted signed peer calls.
    Nonces,
    /// Stored outcomes of idempotent calls from peer organisations.
    PeerCalls,
    /// Memory items past their namespace's TTL, with their chunks.
    Memory,
    /// Recorded events of tasks' streams (for resumption).
    StreamEvents,
    /// Relayed push notifications, then callers' push configs.
    Push,
}

impl RetentionKind {
    /// Every kind, in metric order.
    pub const ALL: [RetentionKind; KINDS] = [
        RetentionKind::TaskRoutes,
        RetentionKind::Audit,
        RetentionKind::Runs,
        RetentionKind::Nonces,
        RetentionKind::PeerCalls,
        RetentionKind::Memory,
        RetentionKind::StreamEvents,
        RetentionKind::Push,
    ];

    /// The metric label and config key.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionKind::TaskRoutes => "task_routes",
            RetentionKind::Audit => "audit",
            RetentionKind::Runs => "runs",
            RetentionKind::Nonces => "nonces",
            RetentionKind::PeerCalls => "peer_calls",
            RetentionKind::Memory => "memory",
            RetentionKind::StreamEvents => "stream_events",
            RetentionKind::Push => "push",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The window of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KindRetention {
    /// Rows older than this many seconds are deleted (by last write for
    /// task routes, creation for runs and audit records; for nonces, the
    /// time past the end of their clock window). `null`: no age limit.
    pub max_age_seconds: Option<u64>,
    /// Beyond this many rows the oldest are deleted. `null` (the default):
    /// no row cap. Not allowed for nonces, which must be kept while their
    /// window lasts.
    pub max_rows: Option<u64>,
}

impl KindRetention {
    fn days(days: u64) -> Self {
        Self {
            max_age_seconds: Some(days * 24 * 3600),
            max_rows: None,
        }
    }
}

/// The `retention:` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run the pruner in `convergio serve`. Default true.
    pub enabled: bool,
    /// Seconds between passes (the first runs at start). Default 60.
    pub interval_seconds: u64,
    /// Rows per delete statement, 1 to 100,000. Default 1,000.
    pub batch_rows: u32,
    /// Milliseconds the pruner sleeps between two batches, so writers
    /// queued behind a delete get the lock. Default 10.
    pub pause_ms: u64,
    /// Task routes: default 7 days since their last write. A follow-up on
    /// a pruned task is answered as for an unknown task.
    pub task_routes: KindRetention,
    /// Audit records: default 90 days. `audit verify` checks the chain from
    /// the checkpoint pruning leaves.
    pub audit: KindRetention,
    /// Finished durable runs: default 30 days since they started.
    pub runs: KindRetention,
    /// Peer nonces: deleted once their clock window ended, plus
    /// `max_age_seconds` (default 0).
    pub nonces: KindRetention,
    /// Stored outcomes of idempotent peer calls: default 7 days since
    /// stored. A peer repeating a key after that runs the agent again, so
    /// keep it longer than a peer's runs may stay interrupted.
    pub peer_calls: KindRetention,
    /// Memory items past their namespace's `ttl_seconds` (reads already
    /// skip them): deleted with their chunks `max_age_seconds` after they
    /// expired (default 0). No row cap: a namespace has its own
    /// `max_items`.
    pub memory: KindRetention,
    /// Recorded events of tasks' streams: default 1 day since recorded. A
    /// caller resuming a stream (SSE `Last-Event-ID`) after that gets an
    /// error naming what is no longer kept.
    pub stream_events: KindRetention,
    /// Relayed push notifications (delivered or dead-lettered) and
    /// callers' push configs: default 7 days since created, as task routes.
    pub push: KindRetention,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 60,
            batch_rows: 1_000,
            pause_ms: 10,
            task_routes: KindRetention::days(7),
            audit: KindRetention::days(90),
            runs: KindRetention::days(30),
            nonces: KindRetention {
                max_age_seconds: Some(0),
                max_rows: None,
            },
            peer_calls: KindRetention::days(7),
            memory: KindRetention {
                max_age_seconds: Some(0),
                max_rows: None,
            },
            stream_events: KindRetention::days(1),
            push: KindRetention::days(7),
        }
    }
}

impl RetentionConfig {
    /// The window of `kind`.
    pub fn kind(&self, kind: RetentionKind) -> &KindRetention {
        match kind {
            RetentionKind::TaskRoutes => &self.task_routes,
            RetentionKind::Audit => &self.audit,
            RetentionKind::Runs => &self.runs,
            RetentionKind::Nonces => &self.nonces,
            RetentionKind::PeerCalls => &self.peer_calls,
            RetentionKind::Memory => &self.memory,
            RetentionKind::StreamEvents => &self.stream_events,
            RetentionKind::Push => &self.push,
        }
    }

    /// Checks the ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_seconds == 0 {
            return Err("retention.interval_seconds must be at least 1".to_owned());
        }
        if !(1..=100_000).contains(&self.batch_rows) {
            return Err(format!(
                "retention.batch_rows must be between 1 and 100000, not {}",
                self.batch_rows
            ));
        }
        if self.nonces.max_rows.is_some() {
            return Err(
                "retention.nonces.max_rows is not allowed: a nonce is kept while its clock \
                 window lasts, or its call could be replayed"
                    .to_owned(),
            );
        }
        if self.memory.max_rows.is_some() {
            return Err(
                "retention.memory.max_rows is not allowed: a memory namespace bounds its items \
                 with its own retention.max_items"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// One kind of row the pruner deletes from.
#[async_trait]
pub trait Prunable: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> RetentionKind;

    /// Deletes up to `limit` of the oldest rows older than `before` (any
    /// age for `None`); returns how many. One short statement.
    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError>;

    /// How many rows are stored (used for the row cap).
    async fn count(&self) -> Result<u64, PruneError>;
}

fn prune_error(
    kind: RetentionKind,
    source: impl std::error::Error + Send + Sync + 'static,
) -> PruneError {
    PruneError {
        kind: kind.as_str(),
        source: Box::new(source),
    }
}

/// Task routes in the registry database.
pub struct TaskRoutesRetention(pub Arc<dyn RetentionStore>);

#[async_trait]
impl Prunable for TaskRoutesRetention {
    fn kind(&self) -> RetentionKind {
        RetentionKind::TaskRoutes
    }

    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError> {
        self.0
            .prune_task_routes(before, limit)
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }

    async fn count(&self) -> Result<u64, PruneError> {
        self.0
            .count_task_routes()
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }
}

/// Peer nonces in the registry database: `before` is compared with the
/// end of each nonce's clock window. There is no row cap, so `count`
/// reports 0 without reading.
pub struct NoncesRetention(pub Arc<dyn RetentionStore>);

#[async_trait]
impl Prunable for NoncesRetention {
    fn kind(&self) -> RetentionKind {
        RetentionKind::Nonces
    }

    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError> {
        // Without a cut-off nothing may go: live nonces guard against replay.
        let Some(before) = before else {
            return Ok(0);
        };
        self.0
            .prune_nonces(before.timestamp(), limit)
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }

    async fn count(&self) -> Result<u64, PruneError> {
        Ok(0)
    }
}

/// A [`Prunable`] over a registry store whose rows carry Unix seconds:
/// `$name(Arc<dyn $store>)` of kind `$kind`, pruning with `$prune` and
/// counting with `$count`.
macro_rules! unix_seconds_prunable {
    ($(#[$doc:meta])* $name:ident, $store:ty, $kind:ident, $prune:ident, $count:ident) => {
        $(#[$doc])*
        pub struct $name(pub Arc<$store>);

        #[async_trait]
        impl Prunable for $name {
            fn kind(&self) -> RetentionKind {
                RetentionKind::$kind
            }

            async fn prune(
                &self,
                before: Option<DateTime<Utc>>,
                limit: u32,
            ) -> Result<u64, PruneError> {
                self.0
                    .$prune(before.map(|before| before.timestamp()), limit)
                    .await
                    .map_err(|error| prune_error(self.kind(), error))
            }

            async fn count(&self) -> Result<u64, PruneError> {
                self.0
                    .$count()
                    .await
                    .map_err(|error| prune_error(self.kind(), error))
            }
        }
    };
}

unix_seconds_prunable!(
    /// Outcomes of idempotent peer calls in the registry database.
    PeerCallsRetention,
    dyn convergio_registry::peer_calls::PeerCallStore,
    PeerCalls,
    prune_outcomes,
    count_outcomes
);
unix_seconds_prunable!(
    /// Recorded stream events in the registry database.
    StreamEventsRetention,
    dyn convergio_registry::stream_events::StreamEventStore,
    StreamEvents,
    prune_events,
    count_events
);
unix_seconds_prunable!(
    /// Push deliveries and configs in the registry database.
    PushRetention,
    dyn convergio_registry::push::PushStore,
    Push,
    prune,
    count
);

/// Expired memory items: `before` is compared with each item's expiry.
/// There is no row cap, so `count` reports 0 without reading.
pub struct MemoryRetention(pub Arc<convergio_memory::Memory>);

#[async_trait]
impl Prunable for MemoryRetention {
    fn kind(&self) -> RetentionKind {
        RetentionKind::Memory
    }

    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError> {
        // Without a cut-off nothing goes: only expiry removes memory.
        let Some(before) = before else {
            return Ok(0);
        };
        self.0
            .prune_expired(before.timestamp(), limit)
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }

    async fn count(&self) -> Result<u64, PruneError> {
        Ok(0)
    }
}

/// The audit chain.
pub struct AuditRetention(pub AuditLog);

#[async_trait]
impl Prunable for AuditRetention {
    fn kind(&self) -> RetentionKind {
        RetentionKind::Audit
    }

    async fn prune(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64, PruneError> {
        self.0
            .prune(before, i64::from(limit))
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }

    async fn count(&self) -> Result<u64, PruneError> {
        self.0
            .count()
            .await
            .map_err(|error| prune_error(self.kind(), error))
    }
}

/// What `/metrics` shows of retention: rows pruned and failures per kind,
/// passes, and the database's size as of the last pass.
#[derive(Debug, Default)]
pub struct RetentionMetrics {
    pruned: [AtomicU64; KINDS],
    errors: [AtomicU64; KINDS],
    passes: AtomicU64,
    database_bytes: AtomicU64,
    free_bytes: AtomicU64,
    backend: std::sync::OnceLock<&'static str>,
}

// === impl RetentionMetrics ===

impl RetentionMetrics {
    /// Rows of `kind` pruned so far.
    pub fn pruned(&self, kind: RetentionKind) -> u64 {
        self.pruned[kind.index()].load(Ordering::Relaxed)
    }

    /// The database size the last pass measured, in bytes.
    pub fn database_bytes(&self) -> u64 {
        self.database_bytes.load(Ordering::Relaxed)
    }

    /// Completed passes.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

impl prometheus_client::collector::Collector for RetentionMetrics {
    /// Rows pruned and failures per kind, passes, and the database's size
    /// as of the last pass, read at each scrape.
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        for (name, help, values) in [
            (
                "convergio_retention_pruned_rows",
                "Rows deleted by retention, by kind.",
                &self.pruned,
            ),
            (
                "convergio_retention_errors",
                "Retention passes that failed, by kind.",
                &self.errors,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for kind in RetentionKind::ALL {
                let labels = [("kind", kind.as_str())];
                ConstCounter::new(values[kind.index()].load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        ConstCounter::new(self.passes()).encode(encoder.encode_descriptor(
            "convergio_retention_passes",
            "Completed retention passes.",
            None,
            MetricType::Counter,
        )?)?;
        let backend = self.backend.get().copied().unwrap_or("unknown");
        let labels = [("backend", backend)];
        for (name, help, bytes) in [
            (
                "convergio_database_size_bytes",
                "Bytes the database takes on disk, as of the last retention pass.",
                self.database_bytes(),
            ),
            (
                "convergio_database_free_bytes",
                "Free pages inside the database file, reused by later writes (SQLite).",
                self.free_bytes.load(Ordering::Relaxed),
            ),
        ] {
            let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Where the pruner takes "now" from (the bench simulates time).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The background pruner.
pub struct Pruner {
    config: RetentionConfig,
    targets: Vec<Arc<dyn Prunable>>,
    database: Option<Arc<dyn RetentionStore>>,
    metrics: Arc<RetentionMetrics>,
    clock: Clock,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Rows deleted, per kind, in [`RetentionKind::ALL`] order.
    pub pruned: [u64; KINDS],
    /// Bytes compaction gave back.
    pub released_bytes: u64,
    /// The database's size after the pass.
    pub database_bytes: u64,
}

// === impl Pruner ===

impl Pruner {
    /// A pruner with `config` over no kinds yet; `database` (when given)
    /// is compacted and measured after each pass.
    pub fn new(config: RetentionConfig, database: Option<Arc<dyn RetentionStore>>) -> Self {
        let metrics = Arc::new(RetentionMetrics::default());
        if let Some(database) = &database {
            let _ = metrics.backend.set(database.backend());
        }
        Self {
            config,
            targets: Vec::new(),
            database,
            metrics,
            clock: Arc::new(Utc::now),
        }
    }

    /// Adds a kind to prune.
    pub fn with_target(mut self, target: Arc<dyn Prunable>) -> Self {
        self.targets.push(target);
        self
    }

    /// Takes "now" from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The metrics this pruner updates (hand them to `/metrics`).
    pub fn metrics(&self) -> Arc<RetentionMetrics> {
        self.metrics.clone()
    }

    /// One pass: every kind by age, then by row cap, in batches; then
    /// compaction and the size. A kind that fails is logged and counted,
    /// and the others still run.
    pub async fn run_pass(&self) -> PassReport {
        let mut report = PassReport::default();
        for target in &self.targets {
            let kind = target.kind();
            match self.prune_kind(target.as_ref()).await {
                Ok(pruned) => report.pruned[kind.index()] += pruned,
                Err(error) => {
                    self.metrics.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, cause = %error.source, "retention pass failed");
                }
            }
        }
        if let Some(database) = &self.database {
            match database.compact().await {
                Ok(released) => report.released_bytes = released,
                Err(error) => tracing::warn!(%error, "database compaction failed"),
            }
            match database.database_size().await {
                Ok(size) => {
                    report.database_bytes = size.bytes;
                    self.metrics
                        .database_bytes
                        .store(size.bytes, Ordering::Relaxed);
                    self.metrics
                        .free_bytes
                        .store(size.free_bytes, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "reading the database size failed"),
            }
        }
        self.metrics.passes.fetch_add(1, Ordering::Relaxed);
        report
    }

    async fn prune_kind(&self, target: &dyn Prunable) -> Result<u64, PruneError> {
        let kind = target.kind();
        let settings = self.config.kind(kind);
        let batch = self.config.batch_rows.max(1);
        let pause = Duration::from_millis(self.config.pause_ms);
        let counter = &self.metrics.pruned[kind.index()];
        let mut total = 0;
        // An age beyond what time can express keeps everything.
        let before = settings
            .max_age_seconds
            .and_then(|age| i64::try_from(age).ok())
            .and_then(chrono::Duration::try_seconds)
            .and_then(|age| (self.clock)().checked_sub_signed(age));
        if let Some(before) = before {
            loop {
                let pruned = target.prune(Some(before), batch).await?;
                counter.fetch_add(pruned, Ordering::Relaxed);
                total += pruned;
                if pruned < u64::from(batch) {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
        if let Some(max_rows) = settings.max_rows {
            let mut excess = target.count().await?.saturating_sub(max_rows);
            while excess > 0 {
                let limit = u32::try_from(excess).unwrap_or(u32::MAX).min(batch);
                let pruned = target.prune(None, limit).await?;
                counter.fetch_add(pruned, Ordering::Relaxed);
                total += pruned;
                if pruned == 0 {
                    break;
                }
                excess = excess.saturating_sub(pruned);
                tokio::time::sleep(pause).await;
            }
        }
        Ok(total)
    }

    /// Runs a pass now and then every `interval_seconds`, until the runtime
    /// stops (or the handle is aborted).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let every = Duration::from_secs(self.config.interval_seconds.max(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            // A slow pass (a large backlog after a restart) does not make
            // the next ones run back to back.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let report = self.run_pass().await;
                if report.pruned.iter().any(|&rows| rows > 0) {
                    tracing::info!(
                        task_routes = report.pruned[0],
                        audit = report.pruned[1],
                        runs = report.pruned[2],
                        nonces = report.pruned[3],
                        peer_calls = report.pruned[4],
                        memory = report.pruned[5],
                        stream_events = report.pruned[6],
                        push = report.pruned[7],
                        released_bytes = report.released_bytes,
                        database_bytes = report.database_bytes,
                        "retention pass"
                    );
                }
            }
        })
    }
}
