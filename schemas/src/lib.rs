//! The shared vocabulary of Convergio: JSON Schemas (validated at runtime), the
//! wire types every crate exchanges, and the one table that maps an
//! [`ErrorKind`] to HTTP statuses, problem types and JSON-RPC codes.
//!
//! Only this crate defines wire types; the others build on them. It performs
//! no I/O, except that with the `http` feature the one REST error path
//! (`problem::http`) logs the failures it renders (through `tracing`).

pub mod a2a;
pub mod bounds;
pub mod card;
pub mod error;
pub mod graph_agent;
pub mod ids;
pub mod model_agent;
pub mod openapi;
pub mod principal;
pub mod problem;
pub mod storage;
pub mod trust;
pub mod validate;

pub use card::AgentCard;
pub use error::ErrorKind;
pub use graph_agent::{GraphAgentError, GraphAgentSpec};
pub use ids::{AgentId, AgentIdError};
pub use model_agent::{
    KeyReference, MemorySearchSpec, ModelAgentError, ModelAgentSpec, ModelMemorySpec, ProviderKind,
};
pub use principal::{AuthMethod, GraphCall, Principal};
pub use problem::{clip, echo, Problem, Violation};
pub use storage::{StorageError, StorageFailure};
pub use trust::{AgentRole, TrustLevel};
pub use validate::{find_nul, validate, SchemaId, NUL_MESSAGE};
