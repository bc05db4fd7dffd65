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
pub mod trace_context;

use std::str::FromStr;
use std::sync::Arc;

pub use error::AgentsError;
use examples::debate::{self, Side};
use examples::planning;
use examples::support::{self, Queue};
pub use logic::AgentLogic;
pub use server::{spawn_logic, Dialects, GateToken, RunningAgent, ServeOptions};
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
    /// Argues for a debate's motion, one given point per round.
    Advocate,
    /// Argues against a debate's motion, one given point per round.
    Critic,
    /// Judges a debate round: continue, or rule on the points made.
    Arbiter,
    /// Writes a debate's ruling up as text.
    VerdictWriter,
    /// Labels a support query billing, technical or general (a router).
    IntentClassifier,
    /// Triages billing tickets.
    BillingSpecialist,
    /// Triages technical tickets.
    TechSupport,
    /// Triages every other ticket.
    Generalist,
    /// Breaks a goal into steps assigned to departments.
    Planner,
    /// Sizes a plan's steps in points.
    Estimator,
    /// Totals estimates by department.
    Summarizer,
    /// Hands a task to workers until each has reported.
    ProjectManager,
}

// === impl ExampleAgent ===

impl ExampleAgent {
    /// Every example agent.
    pub const ALL: [ExampleAgent; 19] = [
        Self::Echo,
        Self::CodeAnalyzer,
        Self::SecurityExpert,
        Self::PerformanceExpert,
        Self::StyleChecker,
        Self::ReviewAggregator,
        Self::ReportGenerator,
        Self::Advocate,
        Self::Critic,
        Self::Arbiter,
        Self::VerdictWriter,
        Self::IntentClassifier,
        Self::BillingSpecialist,
        Self::TechSupport,
        Self::Generalist,
        Self::Planner,
        Self::Estimator,
        Self::Summarizer,
        Self::ProjectManager,
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
            Self::Advocate => "advocate",
            Self::Critic => "critic",
            Self::Arbiter => "arbiter",
            Self::VerdictWriter => "verdict_writer",
            Self::IntentClassifier => "intent_classifier",
            Self::BillingSpecialist => support::specialist_name(Queue::Billing),
            Self::TechSupport => support::specialist_name(Queue::Technical),
            Self::Generalist => support::specialist_name(Queue::General),
            Self::Planner => "planner",
            Self::Estimator => "estimator",
            Self::Summarizer => "summarizer",
            Self::ProjectManager => "project_manager",
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
            Self::Advocate => debate::debater_card(Side::For),
            Self::Critic => debate::debater_card(Side::Against),
            Self::Arbiter => debate::arbiter_card(),
            Self::VerdictWriter => debate::verdict_writer_card(),
            Self::IntentClassifier => support::classifier_card(),
            Self::BillingSpecialist => support::specialist_card(Queue::Billing),
            Self::TechSupport => support::specialist_card(Queue::Technical),
            Self::Generalist => support::specialist_card(Queue::General),
            Self::Planner => planning::planner_card(),
            Self::Estimator => planning::estimator_card(),
            Self::Summarizer => planning::summarizer_card(),
            Self::ProjectManager => examples::project_manager::card_template(),
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
            Self::Advocate => Arc::new(debate::DebaterLogic { side: Side::For }),
            Self::Critic => Arc::new(debate::DebaterLogic {
                side: Side::Against,
            }),
            Self::Arbiter => Arc::new(debate::ArbiterLogic),
            Self::VerdictWriter => Arc::new(debate::VerdictWriterLogic),
            Self::IntentClassifier => Arc::new(support::IntentClassifierLogic),
            Self::BillingSpecialist => Arc::new(support::SpecialistLogic {
                queue: Queue::Billing,
            }),
            Self::TechSupport => Arc::new(support::SpecialistLogic {
                queue: Queue::Technical,
            }),
            Self::Generalist => Arc::new(support::SpecialistLogic {
                queue: Queue::General,
            }),
            Self::Planner => Arc::new(planning::PlannerLogic),
            Self::Estimator => Arc::new(planning::EstimatorLogic),
            Self::Summarizer => Arc::new(planning::SummarizerLogic),
            Self::ProjectManager => Arc::new(examples::project_manager::ProjectManagerLogic),
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
