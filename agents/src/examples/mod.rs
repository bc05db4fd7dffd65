//! The deterministic example agents (no network, no LLM): `echo` and the six
//! agents of the design document's code-review graph
//! (`code_analyzer` → `security_expert` | `performance_expert` |
//! `style_checker` → `review_aggregator` → `report_generator`). Each module
//! documents exactly which input it accepts and what it produces; the
//! shared input and finding formats are in [`review`].

pub mod code_analyzer;
pub mod echo;
pub mod performance_expert;
pub mod report_generator;
pub mod review;
pub mod review_aggregator;
pub mod security_expert;
pub mod style_checker;
