//! Convergio's authorisation: a Cedar policy engine over the shipped schema
//! (`policies/`), versioned policy sets in the registry's database with a
//! watcher that makes a change live in every replica, per-replica quotas,
//! and a hash-chained audit log.
//!
//! Entry points: [`PolicyEngine::authorize`] (the gateway's `Authorize`
//! layer calls it on every request), [`PolicyAdmin`] (writes, rollback,
//! sync), [`PolicyWatcher`], [`api::router`], [`AuditLog`], [`Quotas`] and
//! [`testing::run_policy_tests`].

pub mod admin;
pub mod api;
pub mod audit;
pub mod audit_sink;
pub mod engine;
pub mod error;
pub mod quota;
pub mod store;
pub mod testing;

pub use admin::{PolicyAdmin, PolicyWatcher, DEFAULT_POLL_INTERVAL};
pub use api::{router, PolicyApi};
pub use audit::{
    AuditCheckpoint, AuditEntry, AuditFilter, AuditLog, AuditPage, AuditRecord, VerifiedChain,
};
pub use audit_sink::{AuditSink, AuditWriter, DEFAULT_AUDIT_QUEUE};
pub use engine::{
    caller_agent, Action, AuthzRequest, Decision, PolicyDiagnostic, PolicyEngine, RequestContext,
    Resource,
};
pub use error::{PolicyError, Result};
pub use quota::{QuotaConfig, Quotas, RetryAfter};
pub use store::{NewPolicyVersion, PolicyVersion, Store, StoredAuditRecord};
