//! Stored plugins' tables (migrations 0018 and 0021, issue 21) on either backend: the
//! registry crate's [`PluginStore`] over the process's one [`Db`]. Every
//! statement is written once with `$N` placeholders; none needs per-backend
//! code.
//!
//! Invariants held here:
//! - a plugin's name is unique across organisations, and its kind is fixed
//!   by its first version: the upsert of `plugins` by another organisation
//!   or with another kind matches no row (the `WHERE` of its `DO UPDATE`),
//!   so two replicas cannot both win;
//! - a new version is numbered from `plugins.latest` in the same
//!   transaction that inserts it, so two uploads racing get two numbers
//!   (the second waits for the first's row lock, or SQLite's write lock);
//! - `plugins.latest` and `plugins.sha256` always name the newest stored
//!   version, which is what every replica's watcher polls;
//! - deleting a plugin deletes its versions with it (`ON DELETE CASCADE`,
//!   foreign keys are on for SQLite), in one statement;
//! - a version's grants are a JSON array of names (`'[]'`, the column's
//!   default, for versions stored before 0021 and for none).

use async_trait::async_trait;
use convergio_registry::plugins::{
    LatestPlugin, NewPluginVersion, PluginKind, PluginRow, PluginStore, PluginVersionRow,
};
use convergio_registry::{RegistryError, Result};

use crate::registry::on_pool;
use crate::{Db, DbResult};

const UPSERT_PLUGIN: &str = "INSERT INTO plugins (name, org, kind, latest, sha256, updated_at) \
     VALUES ($1, $2, $3, 1, $4, $5) \
     ON CONFLICT (name) DO UPDATE SET latest = plugins.latest + 1, \
     sha256 = excluded.sha256, updated_at = excluded.updated_at \
     WHERE plugins.org = excluded.org AND plugins.kind = excluded.kind \
     RETURNING latest";
const GET_PLUGIN: &str = "SELECT org, name, kind FROM plugins WHERE name = $1";
const LIST_PLUGINS: &str = "SELECT org, name, kind FROM plugins ORDER BY name";
const LIST_ORG_PLUGINS: &str = "SELECT org, name, kind FROM plugins WHERE org = $1 ORDER BY name";
const INSERT_VERSION: &str = "INSERT INTO plugin_versions \
     (name, version, sha256, size, module, signature, signed_by, declaration, grants, uploaded_by, uploaded_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const LIST_VERSIONS: &str = "SELECT version, sha256, size, signature, signed_by, declaration, \
     grants, uploaded_by, uploaded_at FROM plugin_versions WHERE name = $1 ORDER BY version";
const GET_MODULE: &str = "SELECT module FROM plugin_versions WHERE name = $1 AND version = $2";
const LATEST: &str = "SELECT kind, latest, sha256 FROM plugins WHERE name = $1";
const DELETE_PLUGIN: &str = "DELETE FROM plugins WHERE org = $1 AND name = $2";

/// A `plugins` row as read.
type PluginHead = (String, String, String);
/// A `plugin_versions` row as read (without the module).
type VersionRow = (
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// Stored plugins in the process's database.
#[derive(Debug, Clone)]
pub struct SqlPluginStore {
    db: Db,
}

// === impl SqlPluginStore ===

impl SqlPluginStore {
    /// The store over `db` (already migrated by [`Db::open`]).
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }

    async fn versions(&self, name: &str) -> Result<Vec<PluginVersionRow>> {
        let sql = self.db.backend().sql(LIST_VERSIONS);
        let rows: Vec<VersionRow> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_all(pool)
            .await
            .db("listing plugin versions")?);
        rows.into_iter()
            .map(|row| decode_version(name, row))
            .collect()
    }

    async fn with_versions(&self, head: PluginHead) -> Result<PluginRow> {
        let (org, name, kind) = head;
        let kind = decode_kind(&name, &kind)?;
        let versions = self.versions(&name).await?;
        Ok(PluginRow {
            org,
            name,
            kind,
            versions,
        })
    }
}

fn decode_kind(name: &str, kind: &str) -> Result<PluginKind> {
    PluginKind::parse(kind)
        .ok_or_else(|| RegistryError::corrupt(format!("stored plugin {name} has kind {kind:?}")))
}

fn decode_version(name: &str, row: VersionRow) -> Result<PluginVersionRow> {
    let (
        version,
        sha256,
        size,
        signature,
        signed_by,
        declaration,
        grants,
        uploaded_by,
        uploaded_at,
    ) = row;
    let declaration = declaration
        .map(|text| {
            serde_json::from_str(&text).map_err(|error| {
                RegistryError::corrupt_because(format!("stored plugin {name} v{version}"), error)
            })
        })
        .transpose()?;
    let grants: Vec<String> = serde_json::from_str(&grants).map_err(|error| {
        RegistryError::corrupt_because(format!("stored plugin {name} v{version} grants"), error)
    })?;
    Ok(PluginVersionRow {
        version,
        sha256,
        size,
        signature,
        signed_by,
        declaration,
        grants,
        uploaded_by,
        uploaded_at,
    })
}

#[async_trait]
impl PluginStore for SqlPluginStore {
    async fn put_version(&self, new: &NewPluginVersion<'_>) -> Result<PluginVersionRow> {
        let declaration = new
            .declaration
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| RegistryError::invalid(format!("declaration: {error}")))?;
        let grants = serde_json::to_string(new.grants)
            .map_err(|error| RegistryError::invalid(format!("grants: {error}")))?;
        let size = i64::try_from(new.module.len())
            .map_err(|_| RegistryError::invalid("the module is too large"))?;
        let backend = self.db.backend();
        let upsert = backend.sql(UPSERT_PLUGIN);
        let head_sql = backend.sql(GET_PLUGIN);
        let insert = backend.sql(INSERT_VERSION);
        let version: std::result::Result<i64, (String, String)> = on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning a plugin upload")?;
            let version: Option<i64> = sqlx::query_scalar(&upsert)
                .bind(new.name)
                .bind(new.org)
                .bind(new.kind.as_str())
                .bind(new.sha256)
                .bind(new.at)
                .fetch_optional(&mut *transaction)
                .await
                .db("numbering a plugin version")?;
            match version {
                Some(version) => {
                    sqlx::query(&insert)
                        .bind(new.name)
                        .bind(version)
                        .bind(new.sha256)
                        .bind(size)
                        .bind(new.module)
                        .bind(new.signature)
                        .bind(new.signed_by)
                        .bind(declaration.as_deref())
                        .bind(&grants)
                        .bind(new.uploaded_by)
                        .bind(new.at)
                        .execute(&mut *transaction)
                        .await
                        .db("storing a plugin version")?;
                    transaction
                        .commit()
                        .await
                        .db("committing a plugin upload")?;
                    Ok(version)
                }
                None => {
                    let head: PluginHead = sqlx::query_as(&head_sql)
                        .bind(new.name)
                        .fetch_one(&mut *transaction)
                        .await
                        .db("reading a plugin")?;
                    Err((head.0, head.2))
                }
            }
        });
        match version {
            Ok(version) => Ok(PluginVersionRow {
                version,
                sha256: new.sha256.to_owned(),
                size,
                signature: new.signature.map(str::to_owned),
                signed_by: new.signed_by.map(str::to_owned),
                declaration: new.declaration.cloned(),
                grants: new.grants.to_vec(),
                uploaded_by: new.uploaded_by.to_owned(),
                uploaded_at: new.at,
            }),
            Err((org, _)) if org != new.org => Err(RegistryError::AgentExists {
                agent_id: new.name.to_owned(),
            }),
            Err((_, kind)) => Err(RegistryError::invalid(format!(
                "the plugin {} is of kind {kind}, not {}",
                new.name,
                new.kind.as_str()
            ))),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<PluginRow>> {
        let sql = self.db.backend().sql(GET_PLUGIN);
        let head: Option<PluginHead> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a plugin")?);
        match head {
            Some(head) => Ok(Some(self.with_versions(head).await?)),
            None => Ok(None),
        }
    }

    async fn list(&self, org: Option<&str>) -> Result<Vec<PluginRow>> {
        let heads: Vec<PluginHead> = match org {
            Some(org) => {
                let sql = self.db.backend().sql(LIST_ORG_PLUGINS);
                on_pool!(self.db, |pool| sqlx::query_as(&sql)
                    .bind(org)
                    .fetch_all(pool)
                    .await
                    .db("listing plugins")?)
            }
            None => on_pool!(self.db, |pool| sqlx::query_as(LIST_PLUGINS)
                .fetch_all(pool)
                .await
                .db("listing plugins")?),
        };
        let mut rows = Vec::with_capacity(heads.len());
        for head in heads {
            rows.push(self.with_versions(head).await?);
        }
        Ok(rows)
    }

    async fn module(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>> {
        let sql = self.db.backend().sql(GET_MODULE);
        let module: Option<Vec<u8>> = on_pool!(self.db, |pool| sqlx::query_scalar(&sql)
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await
            .db("reading a plugin module")?);
        Ok(module)
    }

    async fn latest(&self, name: &str) -> Result<Option<LatestPlugin>> {
        let sql = self.db.backend().sql(LATEST);
        let row: Option<(String, i64, String)> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a plugin's newest version")?);
        row.map(|(kind, version, sha256)| {
            Ok(LatestPlugin {
                kind: decode_kind(name, &kind)?,
                version,
                sha256,
            })
        })
        .transpose()
    }

    async fn delete(&self, org: &str, name: &str) -> Result<bool> {
        let sql = self.db.backend().sql(DELETE_PLUGIN);
        let deleted = on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(org)
            .bind(name)
            .execute(pool)
            .await
            .db("deleting a plugin")?
            .rows_affected());
        Ok(deleted > 0)
    }
}
