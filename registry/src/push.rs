//! Push notifications through the gateway (issue 24): the [`PushStore`]
//! trait over the `push_configs` and `push_deliveries` tables of migration
//! 0016, implemented on both backends by `convergio-store` (`PushTables`).
//!
//! A caller's push config is kept here, owned by the caller like its task;
//! the agent is given the gateway's webhook (`hook`, a random id, and
//! `hook_token`, which the agent must present) instead of the caller's URL.
//! Each notification the agent posts becomes a delivery row whose status
//! (`pending`, `delivered`, `dead`) the caller can read.

use async_trait::async_trait;
use serde_json::Value;

use crate::Result;

/// A caller's push config for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct PushConfig {
    /// The task.
    pub task_id: String,
    /// The config's id within the task (the caller's, or made up).
    pub id: String,
    /// The agent's gateway name.
    pub agent: String,
    /// The owner key of the caller who created it.
    pub owner: String,
    /// The caller's `TaskPushNotificationConfig` as given (url, token,
    /// authentication), in A2A 1.0 JSON.
    pub config: Value,
    /// The webhook id the agent was given.
    pub hook: String,
    /// The token the agent must present on the webhook.
    pub hook_token: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where one notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempts continue.
    Pending,
    /// The caller's endpoint accepted it.
    Delivered,
    /// Every attempt failed; it stays here, dead-lettered, until pruned.
    Dead,
}

impl DeliveryStatus {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One notification on its way to a caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Its id.
    pub id: String,
    /// The task.
    pub task_id: String,
    /// The push config's id within the task.
    pub config_id: String,
    /// The caller's owner key.
    pub owner: String,
    /// The notification (an A2A 1.0 `StreamResponse`).
    pub payload: Value,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Unix seconds when the next attempt is due (or the current one
    /// began); long past, a pending delivery was left by a stopped replica.
    pub next_at: i64,
    /// The last attempt's failure.
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// Durable storage of push configs and deliveries.
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Stores `config`; `Ok(false)` when the task already has a config of
    /// that id (nothing changed).
    async fn insert_config(&self, config: &PushConfig) -> Result<bool>;
    /// The config `id` of `task_id`.
    async fn config(&self, task_id: &str, id: &str) -> Result<Option<PushConfig>>;
    /// The config the webhook `hook` belongs to.
    async fn config_by_hook(&self, hook: &str) -> Result<Option<PushConfig>>;
    /// Every config of `task_id`, by id.
    async fn configs(&self, task_id: &str) -> Result<Vec<PushConfig>>;
    /// Gives the config of webhook `hook`, stored before its task was
    /// known (under `placeholder`), its task; `Ok(false)` when it has one
    /// already.
    async fn bind_task(&self, hook: &str, placeholder: &str, task_id: &str) -> Result<bool>;
    /// Deletes the config `id` of `task_id`; `Ok(false)` when there was none.
    async fn delete_config(&self, task_id: &str, id: &str) -> Result<bool>;
    /// Stores a new delivery.
    async fn insert_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// Records an attempt's outcome and when the next one is due.
    async fn update_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        attempts: u32,
        last_error: Option<&str>,
        next_at: i64,
        updated_at: i64,
    ) -> Result<()>;
    /// Up to `limit` pending deliveries whose next attempt was due before
    /// `before` (left by a replica that stopped), oldest first.
    async fn orphaned(&self, before: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// Takes over `delivery` (still pending, its `next_at` unchanged since
    /// it was read) by moving its next attempt to `next_at`; `Ok(false)`
    /// when another replica took it first.
    async fn claim(&self, delivery: &Delivery, next_at: i64) -> Result<bool>;
    /// The deliveries of `task_id`, oldest first.
    async fn deliveries(&self, task_id: &str) -> Result<Vec<Delivery>>;
    /// Deletes up to `limit` of the oldest deliveries, then configs,
    /// created before `before` (Unix seconds; any age for `None`); returns
    /// how many rows.
    async fn prune(&self, before: Option<i64>, limit: u32) -> Result<u64>;
    /// How many deliveries and configs are stored.
    async fn count(&self) -> Result<u64>;
}
