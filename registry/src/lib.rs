//! The agent registry: A2A 1.0 agent cards with an owning organisation, a
//! role, upstream endpoints, a trust level and a version history, stored on
//! SQLite (embedded default) or PostgreSQL (shared deployments), found through
//! discovery queries, and served over a REST API under `/v1/`.
//!
//! - [`model`]: the records;
//! - [`store`]: the [`Store`] trait and the discovery query and page types
//!   (`convergio-store` implements the storage traits on SQLite and
//!   PostgreSQL);
//! - [`service`]: [`Registry`], the rules (validation, trust ladder, cache);
//! - [`api`]: the axum router;
//! - [`keys`]: stored API keys (hashed);
//! - [`model_agents`]: model agent declarations, sealed secrets,
//!   conversations and the usage ledger (issue 17);
//! - [`plugins`]: stored, versioned WebAssembly plugins (issue 21);
//! - [`peers`]: federation peers and accepted signed-call nonces;
//! - [`retention`]: pruning of task routes and nonces, and the database's size.

pub mod api;
pub mod error;
pub mod keys;
pub mod model;
pub mod model_agents;
pub mod peer_calls;
pub mod peers;
pub mod plugins;
pub mod push;
pub mod retention;
pub mod service;
pub mod store;
pub mod stream_events;

pub use error::{RegistryError, Result, UpstreamRefusal};
pub use model::*;
pub use service::{
    AnyUpstream, ChangeHook, NoOrgKeys, OrgKeys, Registry, RegistryBuilder, RegistryChange,
    RegistryConfig, StaticOrgKeys, UpstreamCheck,
};
pub use store::{DiscoveryQuery, Page, Store};
