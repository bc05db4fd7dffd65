//! How long one upstream call may take (issue 17): a model call may take
//! minutes, a health probe should not, so the bound is per agent and per
//! graph node instead of one fixed cap.
//!
//! In order: a graph node's own deadline ([`CallDeadline`], set by the
//! orchestrator's dispatch), else the agent's timeout ([`AgentTimeouts`]:
//! the config's `upstream.agent_timeouts`, and each model agent's declared
//! `timeout_seconds`, kept current by the model fleet), else the default
//! `upstream_timeout`; never more than `max_upstream_timeout`. The same
//! bound pushes the request's own deadline (`RequestDeadline`) so the
//! `Limits` layer does not cut a call the agent was allowed to take.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::A2aConfig;

/// When a graph node's call must be answered, as a request extension set by
/// the orchestrator's dispatch (extensions are not wire data: no outside
/// request can set one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(pub Instant);

/// Per-agent upstream timeouts, shared by the config and the model fleet
/// (which sets one per model agent as it starts it). Compared by identity.
#[derive(Debug, Clone, Default)]
pub struct AgentTimeouts(Arc<RwLock<HashMap<String, Duration>>>);

// === impl AgentTimeouts ===

impl AgentTimeouts {
    /// Timeouts for the agents listed.
    pub fn from_map(timeouts: HashMap<String, Duration>) -> Self {
        Self(Arc::new(RwLock::new(timeouts)))
    }

    /// Sets `agent`'s timeout.
    pub fn set(&self, agent: &str, timeout: Duration) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), timeout);
    }

    /// Forgets `agent`'s timeout (it gets the default again).
    pub fn remove(&self, agent: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(agent);
    }

    /// `agent`'s own timeout, if it has one.
    pub fn get(&self, agent: &str) -> Option<Duration> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .copied()
    }
}

impl PartialEq for AgentTimeouts {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The bound on one call to `agent`: the node's deadline, else the agent's
/// timeout, else the default, capped at the maximum.
pub(crate) fn upstream_timeout(
    config: &A2aConfig,
    agent: &str,
    node: Option<CallDeadline>,
) -> Duration {
    let wanted = match node {
        Some(CallDeadline(at)) => at.saturating_duration_since(Instant::now()),
        None => config
            .agent_timeouts
            .get(agent)
            .unwrap_or(config.upstream_timeout),
    };
    wanted.min(config.max_upstream_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> A2aConfig {
        A2aConfig {
            upstream_timeout: Duration::from_secs(30),
            max_upstream_timeout: Duration::from_secs(600),
            agent_timeouts: AgentTimeouts::from_map(HashMap::from([(
                "slow".to_owned(),
                Duration::from_secs(300),
            )])),
            ..A2aConfig::default()
        }
    }

    #[test]
    fn an_agent_without_its_own_timeout_gets_the_default() {
        assert_eq!(
            upstream_timeout(&config(), "fast", None),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn an_agent_timeout_replaces_the_default_up_to_the_maximum() {
        let config = config();
        assert_eq!(
            upstream_timeout(&config, "slow", None),
            Duration::from_secs(300)
        );
        config.agent_timeouts.set("slow", Duration::from_secs(7200));
        assert_eq!(
            upstream_timeout(&config, "slow", None),
            Duration::from_secs(600)
        );
        config.agent_timeouts.remove("slow");
        assert_eq!(
            upstream_timeout(&config, "slow", None),
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn a_node_deadline_wins_over_the_agent_timeout() {
        let node = CallDeadline(Instant::now() + Duration::from_secs(120));
        let timeout = upstream_timeout(&config(), "fast", Some(node));
        assert!(timeout > Duration::from_secs(100) && timeout <= Duration::from_secs(120));
        let past = CallDeadline(Instant::now());
        assert_eq!(
            upstream_timeout(&config(), "slow", Some(past)),
            Duration::ZERO
        );
    }
}
