//! Stored plans (issue 19): the [`PlanStore`] interface and
//! [`MemoryPlanStore`] for tests and servers without a database.
//!
//! Plans are stored, versioned and owned like stored graphs: a plan has an
//! id, belongs to the principal that asked for it (and its organisation),
//! and every change (an edit in review, approval, rejection, the run it
//! started) adds a version instead of replacing one, so what ran is always
//! on record. Who may see a plan is decided by the gateway (its owner only);
//! the store only keeps rows. `convergio-store` implements it on SQLite and
//! PostgreSQL (migration 0012).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_schemas::{StorageError, StorageFailure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::document::{Constraints, PlanDocument};
use crate::error::PlannerError;

/// Where a plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Made and validated; not run yet.
    Proposed,
    /// `:execute` with `review: true` was asked: waits for a person to
    /// approve (optionally with an edited plan) or reject it.
    AwaitingReview,
    /// Rejected in review; it never runs.
    Rejected,
    /// A run of it was started (`run_id`).
    Executed,
}

// === impl PlanStatus ===

impl PlanStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::AwaitingReview => "awaiting_review",
            Self::Rejected => "rejected",
            Self::Executed => "executed",
        }
    }
}

/// One version of a stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The plan's id.
    pub plan_id: Uuid,
    /// 1 for a new plan, +1 per change.
    pub version: u32,
    /// The owner's organisation (empty: none).
    pub org: String,
    /// The owning principal ([`convergio_schemas::Principal::owner_key`]).
    pub owner: String,
    /// Where the plan is in its life.
    pub status: PlanStatus,
    /// `builtin` or the planner agent's name.
    pub planner: String,
    /// The constraints it was made under.
    pub constraints: Constraints,
    /// The plan.
    pub document: PlanDocument,
    /// The name its runs carry (`plan-<id>`).
    pub graph_name: String,
    /// The graph it runs, as YAML.
    pub graph_yaml: String,
    /// The `:execute` request waiting for review (awaiting_review only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_execution: Option<Value>,
    /// The run it started (executed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// When this version was stored (set by the store).
    pub stored_at: DateTime<Utc>,
}

/// Which plans [`PlanStore::list`] returns: one owner's, the latest
/// version of each, newest first (plan ids are UUIDv7, so id order is
/// creation order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanFilter {
    /// Only plans of this owner ([`convergio_schemas::Principal::owner_key`]).
    pub owner: String,
    /// Only plans whose latest version is in this status.
    pub status: Option<PlanStatus>,
    /// Only plans older than this one (the paging cursor).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// Versioned plans.
#[async_trait]
pub trait PlanStore: Send + Sync + 'static {
    /// Stores a new version of `plan.plan_id`: 1 for a new id, else the
    /// latest + 1. The store sets `version` and `stored_at`.
    async fn put(&self, plan: &StoredPlan) -> Result<StoredPlan, PlannerError>;

    /// One version of a plan (the latest when `version` is `None`).
    async fn get(
        &self,
        plan_id: Uuid,
        version: Option<u32>,
    ) -> Result<Option<StoredPlan>, PlannerError>;

    /// The latest version of each plan `filter` selects, newest first.
    async fn list(&self, filter: &PlanFilter) -> Result<Vec<StoredPlan>, PlannerError>;
}

/// Plans kept in memory (per process, lost on restart).
#[derive(Debug, Default)]
pub struct MemoryPlanStore {
    plans: Mutex<BTreeMap<Uuid, Vec<StoredPlan>>>,
}

fn poisoned() -> PlannerError {
    PlannerError::Storage(StorageError::plain(
        StorageFailure::Other,
        "the in-memory plan store's lock is poisoned",
    ))
}

#[async_trait]
impl PlanStore for MemoryPlanStore {
    async fn put(&self, plan: &StoredPlan) -> Result<StoredPlan, PlannerError> {
        let mut plans = self.plans.lock().map_err(|_| poisoned())?;
        let versions = plans.entry(plan.plan_id).or_default();
        let mut stored = plan.clone();
        stored.version = versions.len() as u32 + 1;
        stored.stored_at = Utc::now();
        versions.push(stored.clone());
        Ok(stored)
    }

    async fn get(
        &self,
        plan_id: Uuid,
        version: Option<u32>,
    ) -> Result<Option<StoredPlan>, PlannerError> {
        let plans = self.plans.lock().map_err(|_| poisoned())?;
        let Some(versions) = plans.get(&plan_id) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(version) => versions
                .iter()
                .find(|plan| plan.version == version)
                .cloned(),
        })
    }

    async fn list(&self, filter: &PlanFilter) -> Result<Vec<StoredPlan>, PlannerError> {
        let plans = self.plans.lock().map_err(|_| poisoned())?;
        Ok(plans
            .iter()
            .rev()
            .filter(|(plan_id, _)| filter.before.is_none_or(|before| **plan_id < before))
            .filter_map(|(_, versions)| versions.last())
            .filter(|plan| {
                plan.owner == filter.owner
                    && filter.status.is_none_or(|status| plan.status == status)
            })
            .take(filter.limit as usize)
            .cloned()
            .collect())
    }
}

/// A plan record for tests of stores.
pub fn sample_plan(plan_id: Uuid, owner: &str) -> StoredPlan {
    StoredPlan {
        plan_id,
        version: 0,
        org: "example.org".to_owned(),
        owner: owner.to_owned(),
        status: PlanStatus::Proposed,
        planner: "builtin".to_owned(),
        constraints: Constraints::default(),
        document: PlanDocument {
            goal: "say hello".to_owned(),
            steps: vec![crate::document::PlanStep {
                id: "echo".to_owned(),
                agent: "echo".to_owned(),
                task: "say hello".to_owned(),
                inputs: Vec::new(),
                after: Vec::new(),
            }],
            rationale: vec!["one step".to_owned()],
            candidates: Vec::new(),
        },
        graph_name: format!("plan-{}", plan_id.simple()),
        graph_yaml: String::new(),
        pending_execution: None,
        run_id: None,
        stored_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_each_change() {
        let store = MemoryPlanStore::default();
        let id = Uuid::new_v4();
        let first = store.put(&sample_plan(id, "alice")).await.ok();
        let mut changed = sample_plan(id, "alice");
        changed.status = PlanStatus::Rejected;
        let second = store.put(&changed).await.ok();
        assert_eq!(first.map(|plan| plan.version), Some(1));
        assert_eq!(second.map(|plan| plan.version), Some(2));
        let latest = store.get(id, None).await.ok().flatten();
        assert_eq!(latest.map(|plan| plan.status), Some(PlanStatus::Rejected));
        let old = store.get(id, Some(1)).await.ok().flatten();
        assert_eq!(old.map(|plan| plan.status), Some(PlanStatus::Proposed));
        assert!(store
            .get(Uuid::new_v4(), None)
            .await
            .ok()
            .flatten()
            .is_none());
    }

    #[tokio::test]
    async fn lists_an_owners_latest_versions_newest_first() {
        let store = MemoryPlanStore::default();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            store.put(&sample_plan(*id, "alice")).await.ok();
        }
        store.put(&sample_plan(Uuid::now_v7(), "bob")).await.ok();
        let mut rejected = sample_plan(ids[1], "alice");
        rejected.status = PlanStatus::Rejected;
        store.put(&rejected).await.ok();
        let listed = |filter: PlanFilter| {
            let store = &store;
            async move {
                store
                    .list(&filter)
                    .await
                    .map(|plans| {
                        plans
                            .iter()
                            .map(|plan| (plan.plan_id, plan.version))
                            .collect::<Vec<_>>()
                    })
                    .ok()
            }
        };
        let alice = PlanFilter {
            owner: "alice".to_owned(),
            limit: 10,
            ..PlanFilter::default()
        };
        assert_eq!(
            listed(alice.clone()).await,
            Some(vec![(ids[2], 1), (ids[1], 2), (ids[0], 1)])
        );
        let page = PlanFilter {
            before: Some(ids[2]),
            limit: 1,
            ..alice.clone()
        };
        assert_eq!(listed(page).await, Some(vec![(ids[1], 2)]));
        let status = PlanFilter {
            status: Some(PlanStatus::Proposed),
            ..alice
        };
        assert_eq!(listed(status).await, Some(vec![(ids[2], 1), (ids[0], 1)]));
    }
}
