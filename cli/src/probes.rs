//! What `/readyz` checks in `convergio serve`: the database answers and has
//! every migration this binary ships, the policy engine holds an active set
//! (the gateway's [`PolicyLoaded`]), and the example agents, when this
//! process started them, accept connections. And what `/metrics` reads of
//! the database pool ([`DatabasePool`]).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use convergio_gateway::metrics::PoolUsage;
use convergio_gateway::readiness::{PolicyLoaded, ReadinessCheck};
use convergio_policy::PolicyEngine;

/// Ready when the database answers and no shipped migration is pending.
pub struct DatabaseReady(pub convergio_store::Db);

#[async_trait]
impl ReadinessCheck for DatabaseReady {
    fn name(&self) -> &str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.pending_migrations().await {
            Ok(0) => Ok(()),
            Ok(pending) => Err(format!("{pending} migrations not applied")),
            Err(error) => {
                // The cause (which may name the host) goes to the log only.
                tracing::warn!(error = %convergio_schemas::problem::ErrorChain(&error), "readiness: database check failed");
                Err("unreachable".to_owned())
            }
        }
    }
}

/// Ready when every example agent this process started accepts a TCP
/// connection on its loopback socket.
pub struct ExamplesUp(pub Vec<(String, SocketAddr)>);

#[async_trait]
impl ReadinessCheck for ExamplesUp {
    fn name(&self) -> &str {
        "examples"
    }

    async fn check(&self) -> Result<(), String> {
        let probes = self.0.iter().map(|(name, socket)| async move {
            match tokio::net::TcpStream::connect(socket).await {
                Ok(_) => None,
                Err(_) => Some(name.as_str()),
            }
        });
        let down: Vec<&str> = futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("not answering: {}", down.join(", ")))
        }
    }
}

/// The checks of a server on `db` with `engine`, and `examples` (name and
/// socket) when it started them.
pub fn checks(
    db: &convergio_store::Db,
    engine: Arc<PolicyEngine>,
    examples: Vec<(String, SocketAddr)>,
) -> Vec<Arc<dyn ReadinessCheck>> {
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(DatabaseReady(db.clone())),
        Arc::new(PolicyLoaded(engine)),
    ];
    if !examples.is_empty() {
        checks.push(Arc::new(ExamplesUp(examples)));
    }
    checks
}

/// The pool gauges' source: the process's one database pool.
pub struct DatabasePool(pub convergio_store::Db);

impl PoolUsage for DatabasePool {
    fn connections(&self) -> (u32, u32) {
        let usage = self.0.pool_usage();
        (usage.in_use, usage.idle)
    }
}
