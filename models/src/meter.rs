//! [`Meter`]: token budgets and the usage ledger. A model agent asks for
//! its organisation's allowance *before* each provider call (the request's
//! `max_tokens` is capped at what is left; nothing left refuses the call)
//! and records the provider's usage report after it; the record answers
//! with what the call cost by the deployment's price table, which the
//! agent reports in its answer's `usage` so a graph's trace can sum it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use convergio_schemas::StorageError;

use crate::types::{ProviderKind, Usage};

/// One provider call's usage, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// The organisation that pays (owns the agent).
    pub org: String,
    /// The model agent.
    pub agent: String,
    /// The provider's protocol.
    pub provider: ProviderKind,
    /// The model.
    pub model: String,
    /// The A2A context and task the call served.
    pub context_id: String,
    /// The task.
    pub task_id: String,
    /// Tokens as the provider reported them.
    pub usage: Usage,
}

/// Token budgets and the usage ledger.
#[async_trait]
pub trait Meter: Send + Sync + 'static {
    /// Tokens `org` may still spend, or `None` without a budget.
    async fn allowance(&self, org: &str) -> Result<Option<u64>, StorageError>;

    /// Records one call's usage; answers its cost in millionths of the
    /// price table's unit (0 when the model is not priced).
    async fn record(&self, record: &UsageRecord) -> Result<u64, StorageError>;
}

/// No budget and no ledger.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unmetered;

#[async_trait]
impl Meter for Unmetered {
    async fn allowance(&self, _org: &str) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }

    async fn record(&self, _record: &UsageRecord) -> Result<u64, StorageError> {
        Ok(0)
    }
}

/// Budgets and a ledger in memory (tests, single-process use).
#[derive(Debug, Default)]
pub struct InMemoryMeter {
    inner: Mutex<MeterInner>,
}

#[derive(Debug, Default)]
struct MeterInner {
    budgets: HashMap<String, u64>,
    records: Vec<UsageRecord>,
}

// === impl InMemoryMeter ===

impl InMemoryMeter {
    /// Gives `org` a budget of `tokens` (spent by every recorded call).
    pub fn with_budget(self, org: &str, tokens: u64) -> Self {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .budgets
            .insert(org.to_owned(), tokens);
        self
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .clone()
    }
}

#[async_trait]
impl Meter for InMemoryMeter {
    async fn allowance(&self, org: &str) -> Result<Option<u64>, StorageError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(budget) = inner.budgets.get(org) else {
            return Ok(None);
        };
        let spent: u64 = inner
            .records
            .iter()
            .filter(|record| record.org == org)
            .map(|record| record.usage.total())
            .sum();
        Ok(Some(budget.saturating_sub(spent)))
    }

    async fn record(&self, record: &UsageRecord) -> Result<u64, StorageError> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .push(record.clone());
        Ok(0)
    }
}
