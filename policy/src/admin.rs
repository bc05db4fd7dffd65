//! Policy administration: storing, activating and rolling back versions with
//! the lock-out check, keeping the engine in step with the database, and the
//! [`PolicyWatcher`] that makes a change live in every replica.
//!
//! Order of a write: validate (strict, against the schema) → lock-out check
//! → one store transaction that inserts the version and activates it → swap
//! the local engine → audit. A failure before the transaction leaves the
//! active policy unchanged everywhere.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use convergio_schemas::Principal;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::audit::{AuditEntry, AuditLog};
use crate::engine::{
    Action, AuthzRequest, Decision, PolicyEngine, RequestContext, Resource, ADMIN_ONLY_POLICIES,
};
use crate::error::{PolicyError, Result};
use crate::store::{NewPolicyVersion, PolicyVersion, Store};

/// How often the watcher polls the active version by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The engine, its store and the audit log, used together.
#[derive(Clone)]
pub struct PolicyAdmin {
    engine: Arc<PolicyEngine>,
    store: Arc<dyn Store>,
    audit: AuditLog,
}

// === impl PolicyAdmin ===

impl PolicyAdmin {
    /// Ties `engine` to `store`; call [`PolicyAdmin::sync`] once at startup.
    pub fn new(engine: Arc<PolicyEngine>, store: Arc<dyn Store>) -> Self {
        let audit = AuditLog::new(store.clone());
        Self {
            engine,
            store,
            audit,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Decides whether `principal` may administer policy, records the
    /// decision, and fails with `Forbidden` if not.
    pub async fn require_administrator(
        &self,
        principal: &Principal,
        request_id: Option<String>,
    ) -> Result<Decision> {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            ..RequestContext::default()
        };
        let decision = self.engine.authorize(&AuthzRequest {
            principal,
            action: Action::AdministerPolicy,
            resource: &Resource::Policy,
            context: &context,
        });
        self.audit
            .record_decision(
                request_id,
                principal,
                Action::AdministerPolicy,
                &Resource::Policy,
                &decision,
            )
            .await?;
        if decision.allowed {
            Ok(decision)
        } else {
            Err(PolicyError::Forbidden {
                principal: principal.subject.clone(),
                action: Action::AdministerPolicy.as_str().to_owned(),
            })
        }
    }

    /// Validates `text`, refuses a lock-out, stores it as the new active
    /// version and swaps the engine.
    pub async fn put(
        &self,
        author: &Principal,
        text: &str,
        reason: &str,
        request_id: Option<String>,
    ) -> Result<PolicyVersion> {
        let set = self
            .engine
            .validate(text)
            .map_err(|diagnostics| PolicyError::InvalidPolicy { diagnostics })?;
        if !self.engine.keeps_an_administrator(&set) {
            return Err(PolicyError::LockOut);
        }
        let stored = self
            .store
            .insert_active(&NewPolicyVersion {
                text: text.to_owned(),
                author: author.subject.clone(),
                reason: reason.to_owned(),
                created_at: Utc::now(),
            })
            .await?;
        self.engine.install(Some(stored.version), text, &set);
        self.audit
            .append(&AuditEntry::change(
                request_id,
                author,
                "policy.put",
                "policy",
                json!({ "version": stored.version, "reason": reason }),
            ))
            .await?;
        Ok(stored)
    }

    /// Makes an old version active again, as a new version with its text.
    pub async fn rollback(
        &self,
        author: &Principal,
        version: i64,
        reason: &str,
        request_id: Option<String>,
    ) -> Result<PolicyVersion> {
        let old = self.store.get(Some(version)).await?;
        let reason = if reason.is_empty() {
            format!("rollback to version {version}")
        } else {
            format!("rollback to version {version}: {reason}")
        };
        self.put(author, &old.text, &reason, request_id).await
    }

    /// `DELETE /v1/policies`: activates the administrators-only set, so every
    /// other request is denied while administrators keep control.
    pub async fn reset(
        &self,
        author: &Principal,
        reason: &str,
        request_id: Option<String>,
    ) -> Result<PolicyVersion> {
        let reason = if reason.is_empty() {
            "reset to administrators only".to_owned()
        } else {
            reason.to_owned()
        };
        self.put(author, ADMIN_ONLY_POLICIES, &reason, request_id)
            .await
    }

    /// Start-up: loads the stored active set, or, on the very first start
    /// (no version stored), stores the embedded example set as version 1 on
    /// behalf of the server. Returns the active version.
    pub async fn bootstrap(&self) -> Result<i64> {
        if self.store.active_version().await?.is_none() {
            let stored = self
                .put(
                    &Principal::system(),
                    crate::engine::EXAMPLE_POLICIES,
                    "embedded default (policies/example.cedar) stored at first start",
                    None,
                )
                .await?;
            return Ok(stored.version);
        }
        self.sync().await?;
        self.engine
            .active_version()
            .ok_or(PolicyError::NoActivePolicy)
    }

    /// Loads the store's active version into the engine if it differs.
    /// Returns whether the engine changed. Without any stored version the
    /// engine keeps what it has (the embedded default).
    pub async fn sync(&self) -> Result<bool> {
        let Some(active) = self.store.active_version().await? else {
            return Ok(false);
        };
        if self.engine.active_version() == Some(active) {
            return Ok(false);
        }
        let stored = self.store.get(Some(active)).await?;
        self.engine.load(Some(stored.version), &stored.text)?;
        Ok(true)
    }
}

/// Polls the store and swaps the engine when another replica activated a
/// new version. Stops when dropped.
#[derive(Debug)]
pub struct PolicyWatcher {
    handle: JoinHandle<()>,
}

// === impl PolicyWatcher ===

impl PolicyWatcher {
    /// Starts polling every `interval` (use [`DEFAULT_POLL_INTERVAL`]).
    pub fn spawn(admin: PolicyAdmin, interval: Duration) -> Self {
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match admin.sync().await {
                    Ok(true) => tracing::info!(
                        version = admin.engine.active_version(),
                        "policy set reloaded"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "policy watcher could not sync"),
                }
            }
        });
        Self { handle }
    }

    /// Stops polling.
    pub fn stop(self) {
        self.handle.abort();
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
