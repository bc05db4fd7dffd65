//! [`PushTables`]: the `push_configs` and `push_deliveries` tables
//! (migration 0016) on either backend, one statement per operation.

use async_trait::async_trait;
use convergio_registry::push::{Delivery, DeliveryStatus, PushConfig, PushStore};
use convergio_registry::{RegistryError, Result};
use serde_json::Value;

use super::on_pool;
use crate::{Db, DbResult};

/// The columns of a config, in the order [`config_of`] reads them.
macro_rules! config_columns {
    () => {
        "task_id, id, agent, owner, config, hook, hook_token, created_at"
    };
}

const CONFIGS_OF_TASK: &str = concat!(
    "SELECT ",
    config_columns!(),
    " FROM push_configs WHERE task_id = $1 ORDER BY id"
);
const CONFIG_OF_HOOK: &str = concat!(
    "SELECT ",
    config_columns!(),
    " FROM push_configs WHERE hook = $1"
);
/// The columns of a delivery, in the order [`delivery_of`] reads them.
macro_rules! delivery_columns {
    () => {
        "id, task_id, config_id, owner, payload, status, attempts, next_at, last_error, \
         created_at, updated_at"
    };
}

const DELIVERIES_OF_TASK: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM push_deliveries WHERE task_id = $1 ORDER BY created_at, id"
);
const ORPHANED: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM push_deliveries WHERE status = 'pending' AND next_at < $1 ORDER BY next_at LIMIT $2"
);

type ConfigRow = (String, String, String, String, String, String, String, i64);
type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
);

/// Push configs and deliveries in the process's database.
#[derive(Debug, Clone)]
pub struct PushTables {
    db: Db,
}

// === impl PushTables ===

impl PushTables {
    /// The push tables of `db`.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }

    /// The configs `query` (one of the `CONFIG…` statements) selects by `key`.
    async fn configs_where(&self, query: &'static str, key: &str) -> Result<Vec<PushConfig>> {
        let statement = self.db.backend().sql(query);
        let rows: Vec<ConfigRow> = on_pool!(self.db, |pool| sqlx::query_as(&statement)
            .bind(key)
            .fetch_all(pool)
            .await
            .db("reading push configs")?);
        rows.into_iter().map(config_of).collect()
    }
}

fn json(text: &str, what: &'static str) -> Result<Value> {
    serde_json::from_str(text).map_err(|error| RegistryError::corrupt_because(what, error))
}

fn config_of(row: ConfigRow) -> Result<PushConfig> {
    let (task_id, id, agent, owner, config, hook, hook_token, created_at) = row;
    Ok(PushConfig {
        task_id,
        id,
        agent,
        owner,
        config: json(&config, "a stored push config is not JSON")?,
        hook,
        hook_token,
        created_at,
    })
}

fn delivery_of(row: DeliveryRow) -> Result<Delivery> {
    let (
        id,
        task_id,
        config_id,
        owner,
        payload,
        status,
        attempts,
        next_at,
        last_error,
        created,
        updated,
    ) = row;
    Ok(Delivery {
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            RegistryError::corrupt(format!("a stored push delivery's status is {status:?}"))
        })?,
        id,
        task_id,
        config_id,
        owner,
        payload: json(&payload, "a stored push notification is not JSON")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_at,
        last_error,
        created_at: created,
        updated_at: updated,
    })
}

#[async_trait]
impl PushStore for PushTables {
    async fn insert_config(&self, config: &PushConfig) -> Result<bool> {
        let statement = self.db.backend().sql(
            "INSERT INTO push_configs (task_id, id, agent, owner, config, hook, hook_token, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (task_id, id) DO NOTHING",
        );
        let inserted = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(&config.task_id)
            .bind(&config.id)
            .bind(&config.agent)
            .bind(&config.owner)
            .bind(config.config.to_string())
            .bind(&config.hook)
            .bind(&config.hook_token)
            .bind(config.created_at)
            .execute(pool)
            .await
            .db("storing a push config")?
            .rows_affected());
        Ok(inserted > 0)
    }

    async fn config(&self, task_id: &str, id: &str) -> Result<Option<PushConfig>> {
        Ok(self
            .configs(task_id)
            .await?
            .into_iter()
            .find(|config| config.id == id))
    }

    async fn config_by_hook(&self, hook: &str) -> Result<Option<PushConfig>> {
        Ok(self
            .configs_where(CONFIG_OF_HOOK, hook)
            .await?
            .into_iter()
            .next())
    }

    async fn configs(&self, task_id: &str) -> Result<Vec<PushConfig>> {
        self.configs_where(CONFIGS_OF_TASK, task_id).await
    }

    async fn bind_task(&self, hook: &str, placeholder: &str, task_id: &str) -> Result<bool> {
        let statement = self
            .db
            .backend()
            .sql("UPDATE push_configs SET task_id = $3 WHERE hook = $1 AND task_id = $2");
        let bound = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(hook)
            .bind(placeholder)
            .bind(task_id)
            .execute(pool)
            .await
            .db("binding a push config to its task")?
            .rows_affected());
        Ok(bound > 0)
    }

    async fn delete_config(&self, task_id: &str, id: &str) -> Result<bool> {
        let statement = self
            .db
            .backend()
            .sql("DELETE FROM push_configs WHERE task_id = $1 AND id = $2");
        let deleted = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(task_id)
            .bind(id)
            .execute(pool)
            .await
            .db("deleting a push config")?
            .rows_affected());
        Ok(deleted > 0)
    }

    async fn insert_delivery(&self, delivery: &Delivery) -> Result<()> {
        let statement = self.db.backend().sql(
            "INSERT INTO push_deliveries (id, task_id, config_id, owner, payload, status, \
             attempts, next_at, last_error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        );
        on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(&delivery.id)
            .bind(&delivery.task_id)
            .bind(&delivery.config_id)
            .bind(&delivery.owner)
            .bind(delivery.payload.to_string())
            .bind(delivery.status.as_str())
            .bind(i64::from(delivery.attempts))
            .bind(delivery.next_at)
            .bind(&delivery.last_error)
            .bind(delivery.created_at)
            .bind(delivery.updated_at)
            .execute(pool)
            .await
            .db("storing a push delivery")?
            .rows_affected());
        Ok(())
    }

    async fn update_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        attempts: u32,
        last_error: Option<&str>,
        next_at: i64,
        updated_at: i64,
    ) -> Result<()> {
        let statement = self.db.backend().sql(
            "UPDATE push_deliveries SET status = $2, attempts = $3, last_error = $4, \
             next_at = $5, updated_at = $6 WHERE id = $1",
        );
        on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(id)
            .bind(status.as_str())
            .bind(i64::from(attempts))
            .bind(last_error)
            .bind(next_at)
            .bind(updated_at)
            .execute(pool)
            .await
            .db("recording a push delivery attempt")?
            .rows_affected());
        Ok(())
    }

    async fn orphaned(&self, before: i64, limit: u32) -> Result<Vec<Delivery>> {
        let statement = self.db.backend().sql(ORPHANED);
        let rows: Vec<DeliveryRow> = on_pool!(self.db, |pool| sqlx::query_as(&statement)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .db("reading overdue push deliveries")?);
        rows.into_iter().map(delivery_of).collect()
    }

    async fn claim(&self, delivery: &Delivery, next_at: i64) -> Result<bool> {
        let statement = self.db.backend().sql(
            "UPDATE push_deliveries SET next_at = $3 \
             WHERE id = $1 AND next_at = $2 AND status = 'pending'",
        );
        let claimed = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(&delivery.id)
            .bind(delivery.next_at)
            .bind(next_at)
            .execute(pool)
            .await
            .db("claiming a push delivery")?
            .rows_affected());
        Ok(claimed > 0)
    }

    async fn prune(&self, before: Option<i64>, limit: u32) -> Result<u64> {
        let before = before.unwrap_or(i64::MAX);
        let mut pruned = 0;
        for (statement, what) in [
            (
                "DELETE FROM push_deliveries WHERE id IN (SELECT id FROM push_deliveries \
                 WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                "pruning push deliveries",
            ),
            (
                "DELETE FROM push_configs WHERE hook IN (SELECT hook FROM push_configs \
                 WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                "pruning push configs",
            ),
        ] {
            let left = u64::from(limit).saturating_sub(pruned);
            if left == 0 {
                break;
            }
            let statement = self.db.backend().sql(statement);
            pruned += on_pool!(self.db, |pool| sqlx::query(&statement)
                .bind(before)
                .bind(i64::try_from(left).unwrap_or(i64::MAX))
                .execute(pool)
                .await
                .db(what)?
                .rows_affected());
        }
        Ok(pruned)
    }

    async fn count(&self) -> Result<u64> {
        let rows: i64 = on_pool!(self.db, |pool| {
            sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM push_deliveries) + (SELECT COUNT(*) FROM push_configs)"
        )
        .fetch_one(pool)
        .await
        .db("counting push rows")?
        });
        Ok(u64::try_from(rows).unwrap_or_default())
    }

    async fn deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        let statement = self.db.backend().sql(DELIVERIES_OF_TASK);
        let rows: Vec<DeliveryRow> = on_pool!(self.db, |pool| sqlx::query_as(&statement)
            .bind(task_id)
            .fetch_all(pool)
            .await
            .db("reading push deliveries")?);
        rows.into_iter().map(delivery_of).collect()
    }
}
