//! `/readyz`: whether this replica should be sent traffic, distinct from
//! `/healthz` (whether the process answers at all).
//!
//! A replica is ready when it is not draining and every [`ReadinessCheck`]
//! passes: `convergio serve` hands in the database (reachable, migrations
//! applied), the policy engine (an active set loaded) and, when they run,
//! the example agents (each one accepts a connection). Checks run on each
//! probe, in parallel, each bounded by [`CHECK_TIMEOUT`]; a replica that is
//! not ready answers `503` with a problem document naming what is not.
//!
//! Shutdown ([`Readiness::drain_on`]): on the stop signal readiness turns
//! false first, the listener keeps accepting for `shutdown_delay` (load
//! balancers and Kubernetes endpoints need a moment to see the 503 and stop
//! sending), and only then does the server close its listener and drain.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use convergio_policy::PolicyEngine;
use convergio_schemas::problem::http::respond;
use convergio_schemas::{ErrorKind, Problem};

/// The longest one check may take before it counts as not ready.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One condition of readiness.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Short name used in the `503` detail (`database`, `policy`).
    fn name(&self) -> &str;

    /// `Ok` when ready; otherwise why not, in a few words safe to show any
    /// caller (no addresses, no credentials).
    async fn check(&self) -> Result<(), String>;
}

/// The replica's readiness: a draining flag and the checks.
#[derive(Default)]
pub struct Readiness {
    draining: AtomicBool,
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|check| check.name()).collect();
        f.debug_struct("Readiness")
            .field("draining", &self.is_draining())
            .field("checks", &names)
            .finish()
    }
}

// === impl Readiness ===

impl Readiness {
    /// Readiness over `checks` (none: ready until draining).
    pub fn new(checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            checks,
        }
    }

    /// Turns readiness false for good: the replica is stopping.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Self::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs every check: the names and reasons of those that failed (empty
    /// when ready). Draining is reported as the failed check `draining`.
    pub async fn not_ready(&self) -> Vec<(String, String)> {
        if self.is_draining() {
            return vec![("draining".to_owned(), "shutting down".to_owned())];
        }
        let probes = self.checks.iter().map(|check| async move {
            let outcome = tokio::time::timeout(CHECK_TIMEOUT, check.check()).await;
            match outcome {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some((check.name().to_owned(), reason)),
                Err(_) => Some((check.name().to_owned(), "check timed out".to_owned())),
            }
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The `/readyz` answer: `200 ready`, or `503` problem JSON naming
    /// every check that failed.
    pub async fn respond(&self) -> Response {
        let failed = self.not_ready().await;
        if failed.is_empty() {
            return "ready".into_response();
        }
        let detail = failed
            .iter()
            .map(|(name, reason)| format!("{name}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        let problem = Problem::new(ErrorKind::Unavailable, format!("not ready: {detail}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        respond(&problem, headers)
    }

    /// The shutdown future `serve_with` waits on: when `signal` completes,
    /// readiness turns false, then the listener stays open for `delay` so
    /// that probes see the `503` and traffic moves away before connections
    /// are refused.
    pub async fn drain_on(
        self: Arc<Self>,
        signal: impl Future<Output = ()> + Send + 'static,
        delay: Duration,
    ) {
        signal.await;
        self.start_draining();
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "stopping: readiness is false, the listener closes after the shutdown delay"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Ready when the policy engine holds an active set.
#[derive(Clone)]
pub struct PolicyLoaded(pub Arc<PolicyEngine>);

#[async_trait]
impl ReadinessCheck for PolicyLoaded {
    fn name(&self) -> &str {
        "policy"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.active_version() {
            Some(_) => Ok(()),
            None => Err("no active policy set loaded".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    struct Fixed(&'static str, Result<(), String>);

    #[async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &str {
            self.0
        }

        async fn check(&self) -> Result<(), String> {
            self.1.clone()
        }
    }

    #[tokio::test]
    async fn ready_when_every_check_passes_until_draining() {
        let readiness = Readiness::new(vec![Arc::new(Fixed("database", Ok(())))]);
        assert_eq!(readiness.respond().await.status(), 200);
        readiness.start_draining();
        let response = readiness.respond().await;
        assert_eq!(response.status(), 503);
        let body = to_bytes(response.into_body(), 4096).await.expect("body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem json");
        assert_eq!(problem["detail"], "not ready: draining: shutting down");
    }

    #[tokio::test]
    async fn names_every_failed_check() {
        let readiness = Readiness::new(vec![
            Arc::new(Fixed("database", Err("unreachable".to_owned()))),
            Arc::new(Fixed("policy", Ok(()))),
            Arc::new(Fixed("examples", Err("echo is down".to_owned()))),
        ]);
        let response = readiness.respond().await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = to_bytes(response.into_body(), 4096).await.expect("body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem json");
        assert_eq!(
            problem["detail"],
            "not ready: database: unreachable; examples: echo is down"
        );
    }
}
