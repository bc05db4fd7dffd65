//! The deterministic example agents (no network, no LLM): `echo`, the six
//! agents of the design document's code-review graph
//! (`code_analyzer` → `security_expert` | `performance_expert` |
//! `style_checker` → `review_aggregator` → `report_generator`), and the
//! agents the other graphs in `examples/graphs/` call: [`debate`],
//! [`support`] (dynamic routing), [`planning`] (hierarchical, sequential)
//! and [`project_manager`] (supervisor-worker). Each module documents
//! exactly which input it accepts and what it produces; the shared input
//! and finding formats of the reviewers are in [`review`].

pub mod code_analyzer;
pub mod debate;
pub mod echo;
pub mod performance_expert;
pub mod planning;
pub mod project_manager;
pub mod report_generator;
pub mod review;
pub mod review_aggregator;
pub mod security_expert;
pub mod shared;
pub mod style_checker;
pub mod support;
