//! `convergio-agents`: deterministic example agents that are real A2A 1.0
//! servers on loopback ports, and the small reusable server they run on.
//!
//! - [`spawn`] starts one of the [`ExampleAgent`]s; [`spawn_logic`] starts
//!   any [`AgentLogic`] with a card template.
//! - The server ([`server`]) serves the card, JSON-RPC at `POST /` and
//!   HTTP+JSON on the same base URL, in the 1.0 dialect and (JSON-RPC only)
//!   the 0.3 dialect.
//! - Tasks live in memory ([`tasks`]); the logic drives them through a
//!   [`TaskContext`].

mod dialect;
pub mod error;
pub mod examples;
mod jsonrpc;
pub mod logic;
mod protocol;
mod rest;
pub mod server;
mod service;
mod sse;
pub mod tasks;

use std::str::FromStr;
use std::sync::Arc;

pub use error::AgentsError;
pub use logic::AgentLogic;
pub use server::{spawn_logic, Dialects, RunningAgent, ServeOptions};
pub use tasks::TaskContext;

/// The example agents this crate ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExampleAgent {
    /// Echoes text; has test hooks (`sleep:<ms>`, `fail`, `input`, `message`).
    Echo,
    /// Measures source code and passes it on.
    CodeAnalyzer,
    /// Security pattern checks.
    SecurityExpert,
    /// Performance pattern checks.
    PerformanceExpert,
    /// Layout and naming checks.
    StyleChecker,
    /// Merges and de-duplicates findings.
    ReviewAggregator,
    /// Renders findings as Markdown.
    ReportGenerator,
}

// === impl ExampleAgent ===

impl ExampleAgent {
    /// Every example agent.
    pub const ALL: [ExampleAgent; 7] = [
        Self::Echo,
        Self::CodeAnalyzer,
        Self::SecurityExpert,
        Self::PerformanceExpert,
        Self::StyleChecker,
        Self::ReviewAggregator,
        Self::ReportGenerator,
    ];

    /// The agent's name (`echo`, `code_analyzer`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::CodeAnalyzer => "code_analyzer",
            Self::SecurityExpert => "security_expert",
            Self::PerformanceExpert => "performance_expert",
            Self::StyleChecker => "style_checker",
            Self::ReviewAggregator => "review_aggregator",
            Self::ReportGenerator => "report_generator",
        }
    }

    /// The card template (everything but `supportedInterfaces`).
    pub fn card_template(self) -> serde_json::Value {
        match self {
            Self::Echo => examples::echo::card(),
            Self::CodeAnalyzer => examples::code_analyzer::card(),
            Self::SecurityExpert => examples::security_expert::card(),
            Self::PerformanceExpert => examples::performance_expert::card(),
            Self::StyleChecker => examples::style_checker::card(),
            Self::ReviewAggregator => examples::review_aggregator::card(),
            Self::ReportGenerator => examples::report_generator::card(),
        }
    }

    /// The agent's logic.
    pub fn logic(self) -> Arc<dyn AgentLogic> {
        match self {
            Self::Echo => Arc::new(examples::echo::EchoLogic),
            Self::CodeAnalyzer => Arc::new(examples::code_analyzer::CodeAnalyzerLogic),
            Self::SecurityExpert => Arc::new(examples::security_expert::SecurityExpertLogic),
            Self::PerformanceExpert => {
                Arc::new(examples::performance_expert::PerformanceExpertLogic)
            }
            Self::StyleChecker => Arc::new(examples::style_checker::StyleCheckerLogic),
            Self::ReviewAggregator => Arc::new(examples::review_aggregator::ReviewAggregatorLogic),
            Self::ReportGenerator => Arc::new(examples::report_generator::ReportGeneratorLogic),
        }
    }
}

impl std::fmt::Display for ExampleAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ExampleAgent {
    type Err = AgentsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|agent| agent.name() == name)
            .ok_or_else(|| AgentsError::UnknownAgent {
                name: name.to_owned(),
            })
    }
}

/// Starts an example agent on `listener`.
pub async fn spawn(
    agent: ExampleAgent,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
) -> Result<RunningAgent, AgentsError> {
    spawn_logic(agent.logic(), agent.card_template(), listener, options).await
}
