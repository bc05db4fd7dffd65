//! Stored graph documents (issue 14): the [`GraphStore`] interface the
//! graph API keeps named graphs in, and [`MemoryGraphStore`] for tests and
//! servers without a database.
//!
//! A stored graph belongs to an organisation: names are per organisation
//! (two organisations may each have a `review` graph), and every store of an
//! existing name adds a version instead of replacing it, so a run can name
//! the exact version it ran. Who may store, read or run which
//! organisation's graphs is policy's decision, made by the gateway before
//! the store is asked; the store only keeps rows. `convergio-store`
//! implements it on SQLite and PostgreSQL, next to the run tables.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use convergio_schemas::{StorageError, StorageFailure};

use crate::api::{GraphDocument, GraphSummary};
use crate::error::OrchestratorError;

/// A stored graph published as an A2A agent (issue 18): the agent's name
/// (unique across organisations, like every agent's `/agents/{name}`), its
/// organisation and the publication document, versioned per write.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphAgentRow {
    /// The publishing organisation.
    pub org: String,
    /// The agent's name.
    pub name: String,
    /// The checked publication document (JSON).
    pub spec: serde_json::Value,
    /// 1 on creation, one more on every update.
    pub version: i64,
    /// Last write, Unix seconds.
    pub updated_at: i64,
}

/// Graphs published as agents. Who may publish or read which
/// organisation's is policy's decision, made by the gateway first.
#[async_trait]
pub trait GraphAgentStore: Send + Sync + 'static {
    /// Creates `org`'s publication `name` (version 1) or replaces it
    /// (version + 1); `None`, writing nothing, when another organisation
    /// holds the name.
    async fn put_graph_agent(
        &self,
        org: &str,
        name: &str,
        spec: &serde_json::Value,
        at: i64,
    ) -> Result<Option<GraphAgentRow>, OrchestratorError>;

    /// The publication `name`, whoever made it.
    async fn get_graph_agent(&self, name: &str)
        -> Result<Option<GraphAgentRow>, OrchestratorError>;

    /// `org`'s publications (every one for `None`), by name.
    async fn list_graph_agents(
        &self,
        org: Option<&str>,
    ) -> Result<Vec<GraphAgentRow>, OrchestratorError>;

    /// Deletes `org`'s publication `name`; whether it existed.
    async fn delete_graph_agent(&self, org: &str, name: &str) -> Result<bool, OrchestratorError>;
}

/// Versioned graph documents, per organisation.
#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    /// Stores a new version of `summary.org`'s graph `summary.name`: 1 for
    /// a new name, else the latest version + 1. The store sets `version`
    /// and `stored_at` and returns the stored summary.
    async fn put(
        &self,
        summary: &GraphSummary,
        source: &str,
    ) -> Result<GraphSummary, OrchestratorError>;

    /// One version of a graph (the latest when `version` is `None`).
    async fn get(
        &self,
        org: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<GraphDocument>, OrchestratorError>;

    /// The latest version of each of `org`'s graphs, by name.
    async fn list(&self, org: &str) -> Result<Vec<GraphSummary>, OrchestratorError>;
}

/// Graphs kept in memory (per process, lost on restart).
#[derive(Debug, Default)]
pub struct MemoryGraphStore {
    graphs: Mutex<BTreeMap<(String, String), Vec<GraphDocument>>>,
}

fn poisoned() -> OrchestratorError {
    OrchestratorError::Storage(StorageError::plain(
        StorageFailure::Other,
        "the in-memory graph store's lock is poisoned",
    ))
}

#[async_trait]
impl GraphStore for MemoryGraphStore {
    async fn put(
        &self,
        summary: &GraphSummary,
        source: &str,
    ) -> Result<GraphSummary, OrchestratorError> {
        let mut graphs = self.graphs.lock().map_err(|_| poisoned())?;
        let versions = graphs
            .entry((summary.org.clone(), summary.name.clone()))
            .or_default();
        let mut stored = summary.clone();
        stored.version = versions.len() as u32 + 1;
        stored.stored_at = Utc::now();
        versions.push(GraphDocument {
            summary: stored.clone(),
            source: source.to_owned(),
        });
        Ok(stored)
    }

    async fn get(
        &self,
        org: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<GraphDocument>, OrchestratorError> {
        let graphs = self.graphs.lock().map_err(|_| poisoned())?;
        let Some(versions) = graphs.get(&(org.to_owned(), name.to_owned())) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(version) => versions
                .iter()
                .find(|document| document.summary.version == version)
                .cloned(),
        })
    }

    async fn list(&self, org: &str) -> Result<Vec<GraphSummary>, OrchestratorError> {
        let graphs = self.graphs.lock().map_err(|_| poisoned())?;
        Ok(graphs
            .iter()
            .filter(|((owner, _), _)| owner == org)
            .filter_map(|(_, versions)| versions.last())
            .map(|document| document.summary.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(org: &str, name: &str) -> GraphSummary {
        GraphSummary {
            name: name.to_owned(),
            org: org.to_owned(),
            description: None,
            version: 0,
            nodes: 1,
            edges: 0,
            agents: vec!["echo".to_owned()],
            stored_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn versions_names_per_organisation() {
        let store = MemoryGraphStore::default();
        let first = store.put(&summary("a.example", "g"), "v1").await;
        let second = store.put(&summary("a.example", "g"), "v2").await;
        let other = store.put(&summary("b.example", "g"), "b1").await;
        let versions = [first, second, other].map(|stored| stored.map(|s| s.version).ok());
        assert_eq!(versions, [Some(1), Some(2), Some(1)]);
        let latest = store.get("a.example", "g", None).await.ok().flatten();
        assert_eq!(
            latest.map(|document| document.source),
            Some("v2".to_owned())
        );
        let old = store.get("a.example", "g", Some(1)).await.ok().flatten();
        assert_eq!(old.map(|document| document.source), Some("v1".to_owned()));
        let missing = store.get("c.example", "g", None).await.ok().flatten();
        assert!(missing.is_none());
        let listed = store.list("b.example").await.unwrap_or_default();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].version, 1);
    }
}
