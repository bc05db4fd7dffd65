//! Storage as the registry consumes it: the [`Store`] trait, the discovery
//! query and page types, and the terms a card is found by. The SQL lives in
//! `convergio-store` (`AgentStore`, built from the process's one database
//! handle), which implements [`Store`] on SQLite and PostgreSQL.
//!
//! Invariants every backend keeps (the conformance suite in
//! `tests/conformance.rs` checks them on SQLite and PostgreSQL alike):
//! - every write is one transaction; a failed write leaves nothing behind;
//! - a version write is a compare-and-swap that first copies the old row into
//!   `agent_versions`, so history is complete; the one write that is not a
//!   version is `refresh_upstreams`, the server's own agents' new loopback
//!   address after a restart;
//! - the discovery side tables (`agent_skills`, `agent_tags`, `agent_modes`)
//!   and PostgreSQL's text search vector change in the same transaction as
//!   the row; SQLite's in-memory text index (`convergio-store`'s
//!   `registry/text_index.rs`) follows each committed write, newest version
//!   winning;
//! - deregistration is soft: the row keeps its id with `deleted_at` set. A
//!   deregistered id may be registered again; the new registration continues
//!   the version sequence (the tombstone stays in history) and starts over at
//!   the trust level of the new registration.

use std::collections::BTreeSet;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use convergio_schemas::{AgentCard, AgentId, AgentRole, TrustLevel};
use serde::{Deserialize, Serialize};

use crate::model::{AgentRecord, TaskRoute, TrustChange};
use crate::{RegistryError, Result};

/// The default discovery page size.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// The largest discovery page size.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Durable storage of agent records, their history, trust changes and task routes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Stores a new agent. Fails with `AgentExists` if a live agent has the
    /// id; a deregistered id is registered again as its next version. Returns
    /// the record as stored.
    async fn insert(&self, record: &AgentRecord) -> Result<AgentRecord> {
        self.insert_with_trust_change(record, None).await
    }

    /// [`Store::insert`], recording `trust_change` (the record's trust
    /// against the level a registration starts at) in the same transaction,
    /// so the agent is never readable at a trust it was not given.
    async fn insert_with_trust_change(
        &self,
        record: &AgentRecord,
        trust_change: Option<&TrustChange>,
    ) -> Result<AgentRecord>;

    /// Reads an agent, live or deregistered, at its current version or at
    /// `version` from history.
    async fn get(&self, id: &AgentId, version: Option<i64>) -> Result<AgentRecord>;

    /// Replaces the live agent's card, role and upstreams if it is still at
    /// `expected_version`; the old version goes to history. The stored
    /// version becomes `expected_version + 1`; trust is kept.
    async fn update(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord>;

    /// Replaces the live agent's card and upstreams **in place**, keeping its
    /// version, history, role and trust, if it is still at
    /// `expected_version`. Only for the server's own agents, whose loopback
    /// address is assigned anew at each start and is not part of their
    /// identity: [`crate::Registry::upsert_system`] calls it only when the
    /// new card differs from the stored one in interface URLs alone, so the
    /// discovery terms are unchanged.
    async fn refresh_upstreams(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord>;

    /// Soft-deletes a live agent (optionally only at `expected_version`); the
    /// tombstone is a new version.
    async fn delete(
        &self,
        id: &AgentId,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<AgentRecord>;

    /// Every version of an agent, oldest first, the current one last.
    async fn list_versions(&self, id: &AgentId) -> Result<Vec<AgentRecord>>;

    /// Sets a live agent's trust to `change.to` as a new version and records
    /// the change (its `from` is taken from the stored row) in the same
    /// transaction.
    async fn set_trust(
        &self,
        id: &AgentId,
        expected_version: Option<i64>,
        change: &TrustChange,
    ) -> Result<AgentRecord>;

    /// Every trust change of an agent, oldest first.
    async fn trust_history(&self, id: &AgentId) -> Result<Vec<TrustChange>>;

    /// Finds agents matching every filter of `query`, one page at a time.
    async fn discover(&self, query: &DiscoveryQuery) -> Result<Page<AgentRecord>>;

    /// Stores (or overwrites) a task route; `created_at` of an existing route is kept.
    async fn put_task_route(&self, route: &TaskRoute) -> Result<()>;

    /// Reads a task route.
    async fn get_task_route(&self, task_id: &str) -> Result<Option<TaskRoute>>;

    /// The routes of `owner` (optionally only for `agent`), ordered by task id.
    async fn list_task_routes(
        &self,
        owner: &str,
        agent: Option<&AgentId>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<TaskRoute>>;

    /// Which of `task_ids` are routes of `owner` on `agent`. Reads only the
    /// rows asked about (by primary key), however many tasks `owner` has:
    /// the gateway filters one upstream `ListTasks` page with it.
    async fn owned_task_ids(
        &self,
        owner: &str,
        agent: &AgentId,
        task_ids: &[String],
    ) -> Result<Vec<String>>;

    /// How many task routes `owner` has on `agent` (an index-only count).
    async fn count_task_routes(&self, owner: &str, agent: &AgentId) -> Result<u64>;

    /// The owner of `context_id` at `agent`, claiming it for `owner` first
    /// when nobody holds it: the first principal to use a context id at an
    /// agent keeps it, so two racing claims both read the one winner.
    async fn claim_context(
        &self,
        agent: &AgentId,
        context_id: &str,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<String>;

    /// Inserts many new agents in one transaction (for seeding and benches).
    /// Fails, inserting nothing, if any id is taken.
    async fn bulk_insert(&self, records: &[AgentRecord]) -> Result<u64>;

    /// Refreshes the query planner's statistics; worth calling after a bulk load.
    async fn analyze(&self) -> Result<()>;
}

/// A discovery request; filters combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryQuery {
    /// Free text over name, description and skill names, descriptions and tags,
    /// ranked by relevance.
    #[serde(default)]
    pub q: Option<String>,
    /// A skill id or name (exact, case-insensitive).
    #[serde(default)]
    pub skill: Option<String>,
    /// A skill tag (exact, case-insensitive).
    #[serde(default)]
    pub tag: Option<String>,
    /// An accepted input media type (exact).
    #[serde(default)]
    pub input_mode: Option<String>,
    /// A produced output media type (exact).
    #[serde(default)]
    pub output_mode: Option<String>,
    /// The agent role.
    #[serde(default)]
    pub role: Option<AgentRole>,
    /// The owning organisation (exact, case-insensitive).
    #[serde(default)]
    pub org: Option<String>,
    /// The lowest acceptable trust level.
    #[serde(default)]
    pub min_trust: Option<TrustLevel>,
    /// Results per page: default 20, 1 to 100.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: Option<String>,
    /// Also return deregistered agents.
    #[serde(default)]
    pub include_deleted: bool,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page, in order.
    pub items: Vec<T>,
    /// The token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

// === impl DiscoveryQuery ===

impl DiscoveryQuery {
    /// The checked page size.
    pub fn checked_page_size(&self) -> Result<u32> {
        check_page_size(self.page_size)
    }

    /// The free-text terms of `q`: lower-cased runs of letters and digits.
    /// Empty when there is no usable text.
    pub fn text_terms(&self) -> Vec<String> {
        self.q.as_deref().map(text_terms).unwrap_or_default()
    }

    /// The decoded page token, checked against the query's sort order.
    pub fn cursor(&self) -> Result<Option<Cursor>> {
        let Some(token) = self.page_token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let cursor = Cursor::decode(token)?;
        if cursor.rank.is_some() == self.text_terms().is_empty() {
            return Err(RegistryError::invalid(
                "page_token belongs to a different query",
            ));
        }
        Ok(Some(cursor))
    }

    /// The skill filter, normalised as stored.
    pub fn skill_key(&self) -> Option<String> {
        self.skill.as_deref().map(|s| s.trim().to_lowercase())
    }

    /// The tag filter, normalised as stored.
    pub fn tag_key(&self) -> Option<String> {
        self.tag.as_deref().map(|s| s.trim().to_lowercase())
    }

    /// The org filter, normalised as stored.
    pub fn org_key(&self) -> Option<String> {
        self.org.as_deref().map(|s| s.trim().to_ascii_lowercase())
    }
}

/// Checks a page size: `None` means the default; 1 to 100 otherwise.
pub fn check_page_size(page_size: Option<u32>) -> Result<u32> {
    match page_size {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
        Some(size) => Err(RegistryError::invalid(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}, not {size}"
        ))),
    }
}

/// Splits free text into lower-cased terms of letters and digits, at most 16.
pub fn text_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|term| !term.is_empty())
        .map(str::to_lowercase)
        .take(16)
        .collect()
}

/// The position after the last item of a page: the last sort key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The relevance of the last item, for ranked (free-text) queries.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<f64>,
    /// The last item's key: its row number (unranked), id (ranked) or task id.
    #[serde(rename = "k")]
    pub key: String,
}

// === impl Cursor ===

impl Cursor {
    /// The opaque token: URL-safe base64 of a small JSON object.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Result<Self> {
        let bad = || RegistryError::invalid("page_token is not a token this server issued");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.rank.is_some_and(|rank| !rank.is_finite()) {
            return Err(bad());
        }
        Ok(cursor)
    }
}

/// What the discovery side tables and the text index hold for one card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexTerms {
    /// Skill ids and names, lower-cased.
    pub skills: BTreeSet<String>,
    /// Skill tags, lower-cased.
    pub tags: BTreeSet<String>,
    /// Accepted input media types (card defaults and every skill's).
    pub input_modes: BTreeSet<String>,
    /// Produced output media types (card defaults and every skill's).
    pub output_modes: BTreeSet<String>,
    /// Text for the name column of the full-text index.
    pub search_name: String,
    /// Text for the description column.
    pub search_description: String,
    /// Skill names, descriptions and tags.
    pub search_skills: String,
}

// === impl IndexTerms ===

impl IndexTerms {
    /// The terms of a record. A card without the A2A shape (never stored by
    /// the service, which validates first) indexes only the record name.
    pub fn of(record: &AgentRecord) -> Self {
        let mut terms = IndexTerms {
            search_name: record.name.clone(),
            ..Self::default()
        };
        let Ok(card) = AgentCard::deserialize(&record.card) else {
            return terms;
        };
        terms.search_name = format!("{} {}", card.name, record.name);
        terms.search_description = card.description.clone();
        let mut skill_text = Vec::new();
        for skill in &card.skills {
            terms.skills.insert(skill.id.trim().to_lowercase());
            terms.skills.insert(skill.name.trim().to_lowercase());
            for tag in &skill.tags {
                terms.tags.insert(tag.trim().to_lowercase());
            }
            skill_text.push(skill.name.as_str());
            skill_text.push(skill.description.as_str());
            skill_text.extend(skill.tags.iter().map(String::as_str));
        }
        terms.search_skills = skill_text.join(" ");
        terms.input_modes = card.all_input_modes().map(str::to_owned).collect();
        terms.output_modes = card.all_output_modes().map(str::to_owned).collect();
        terms
    }
}

/// Builds the page from `page_size + 1` fetched rows: the extra row only says
/// that another page exists.
pub fn make_page<T>(mut rows: Vec<T>, page_size: u32, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
    let page_size = page_size as usize;
    let next_page_token = if rows.len() > page_size {
        rows.truncate(page_size);
        rows.last().map(|last| cursor_of(last).encode())
    } else {
        None
    };
    Page {
        items: rows,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            rank: Some(-1.25),
            key: "convergio://agents/echo".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).expect("decodes"), cursor);
        assert!(Cursor::decode("not base64 !").is_err());
        assert!(Cursor::decode("e30").is_err());
    }

    #[test]
    fn text_terms_split_on_punctuation() {
        assert_eq!(
            text_terms("Weather, forecast!  EU"),
            vec!["weather", "forecast", "eu"]
        );
        assert!(text_terms(" \"*() ").is_empty());
    }

    #[test]
    fn page_size_is_checked() {
        assert_eq!(check_page_size(None).expect("default"), 20);
        assert_eq!(check_page_size(Some(100)).expect("max"), 100);
        assert!(check_page_size(Some(0)).is_err());
        assert!(check_page_size(Some(101)).is_err());
    }

    #[test]
    fn token_of_a_ranked_query_is_refused_by_an_unranked_one() {
        let token = Cursor {
            rank: Some(1.0),
            key: "x".into(),
        }
        .encode();
        let query = DiscoveryQuery {
            page_token: Some(token),
            ..DiscoveryQuery::default()
        };
        assert!(query.cursor().is_err());
    }
}
