//! The registry's records: agents, their upstreams, registrations, trust
//! changes, the callers that make them and the gateway's task routes.
//!
//! Records serialise with snake_case keys; the A2A card inside a record keeps
//! its own camelCase ProtoJSON form, stored verbatim.

use chrono::{DateTime, SubsecRound, Utc};
use convergio_schemas::{AgentCard, AgentId, AgentRole, TrustLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One registered agent, at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRecord {
    /// `convergio://agents/<name>` or `external://<org>/agents/<name>`.
    #[schema(value_type = String)]
    pub id: AgentId,
    /// The short name (the last part of the id).
    pub name: String,
    /// The owning organisation's domain.
    pub org: String,
    /// The agent's role in graphs.
    pub role: AgentRole,
    /// The validated A2A 1.0 agent card, exactly as registered (its schema
    /// is `schemas/vendor`'s A2A `AgentCard`).
    #[schema(value_type = Object)]
    pub card: Value,
    /// Where the gateway reaches the agent.
    pub upstreams: Vec<Upstream>,
    /// How far Convergio trusts the agent.
    pub trust: TrustLevel,
    /// 1 on registration, +1 on every change (update, trust change, deregistration).
    pub version: i64,
    /// When the agent was first registered.
    pub created_at: DateTime<Utc>,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
    /// When the agent was deregistered; `None` while it is live.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One endpoint an agent is reached at (an A2A `AgentInterface`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The endpoint URL (`host:port` for gRPC).
    pub url: String,
    /// `JSONRPC`, `GRPC`, `HTTP+JSON` or a URI.
    pub protocol_binding: String,
    /// `Major.Minor`, e.g. `1.0`.
    pub protocol_version: String,
    /// The tenant string to send with every request, if the agent uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A request to register (or update) an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Short name; defaults to the card name, lower-cased, with characters
    /// outside `[a-z0-9_.-]` replaced by `_`.
    #[serde(default)]
    pub name: Option<String>,
    /// Owning organisation; defaults to the registry's own (`org_domain`).
    #[serde(default)]
    pub org: Option<String>,
    /// Role; defaults to `worker`.
    #[serde(default)]
    pub role: Option<AgentRole>,
    /// The A2A 1.0 agent card.
    #[schema(value_type = Object)]
    pub card: Value,
    /// Explicit upstreams; default: the card's `supportedInterfaces`.
    #[serde(default)]
    pub upstreams: Option<Vec<Upstream>>,
    /// Requested trust. Only `registered` (or, for the system actor,
    /// `internal`) is accepted here; other levels go through a trust change.
    #[serde(default)]
    pub trust: Option<TrustLevel>,
}

/// Who makes a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// The principal's subject (`admin`, `system`, `anonymous`, a user id…).
    pub subject: String,
    /// Whether the principal is an administrator.
    pub is_admin: bool,
}

/// One recorded change of an agent's trust level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustChange {
    /// The agent whose trust changed.
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    /// The level before the change.
    pub from: TrustLevel,
    /// The level after the change.
    pub to: TrustLevel,
    /// Who made the change.
    pub actor: Actor,
    /// Why, in the actor's words (1 to 1000 characters).
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Which agent serves a task, so any gateway replica routes follow-ups alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRoute {
    /// The A2A task id the upstream agent generated.
    pub task_id: String,
    /// The A2A context id, when known.
    pub context_id: Option<String>,
    /// The agent that owns the task.
    pub agent_id: AgentId,
    /// The principal subject that created the task; only it may see the task.
    pub owner: String,
    /// When the route was first stored.
    pub created_at: DateTime<Utc>,
    /// When the route was last written.
    pub updated_at: DateTime<Utc>,
}

// === impl AgentRecord ===

impl AgentRecord {
    /// A strong entity tag naming this id at this version.
    pub fn etag(&self) -> String {
        etag_for(&self.id, self.version)
    }

    /// Whether the agent is deregistered.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The card as a typed view, if it has the A2A shape.
    pub fn typed_card(&self) -> Option<AgentCard> {
        serde_json::from_value(self.card.clone()).ok()
    }
}

/// The strong entity tag of `id` at `version`: `"<fnv64(id)>-v<version>"`.
///
/// The hash keeps the tag short and free of characters that need quoting;
/// FNV is used because it is stable across builds and processes.
pub fn etag_for(id: &AgentId, version: i64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}-v{version}\"")
}

// === impl Actor ===

impl Actor {
    /// The registry itself, used for the server's own agents.
    pub fn system() -> Self {
        Self {
            subject: "system".to_owned(),
            is_admin: true,
        }
    }

    /// The bootstrap administrator (bearer token matches the configured one).
    pub fn admin() -> Self {
        Self {
            subject: "admin".to_owned(),
            is_admin: true,
        }
    }

    /// An unauthenticated caller.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".to_owned(),
            is_admin: false,
        }
    }

    /// Whether this is the registry's own system actor.
    pub fn is_system(&self) -> bool {
        self.is_admin && self.subject == "system"
    }
}

// === impl Upstream ===

impl Upstream {
    /// The upstreams a card declares in `supportedInterfaces`, in order.
    pub fn from_card(card: &Value) -> Vec<Upstream> {
        let Some(interfaces) = card.get("supportedInterfaces").and_then(Value::as_array) else {
            return Vec::new();
        };
        interfaces
            .iter()
            .filter_map(|interface| {
                let text = |key: &str| {
                    interface
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                Some(Upstream {
                    url: text("url")?,
                    protocol_binding: text("protocolBinding")?,
                    protocol_version: text("protocolVersion")?,
                    tenant: text("tenant"),
                })
            })
            .collect()
    }
}

/// The default short name for a card name: lower-cased, characters outside
/// `[a-z0-9_.-]` replaced by `_`, leading dots dropped (a name may not start
/// with one), at most 100 characters.
pub fn default_name(card_name: &str) -> String {
    card_name
        .trim()
        .trim_start_matches('.')
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// The current time at microsecond precision, which both backends store
/// exactly, so a record read back equals the record written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_name_lowercases_and_replaces_odd_characters() {
        assert_eq!(default_name("Weather Bot 2!"), "weather_bot_2_");
        assert_eq!(default_name("sql-analyst.v1"), "sql-analyst.v1");
        assert_eq!(default_name("Ünïcode"), "_n_code");
        assert_eq!(default_name(".NET Bot"), "net_bot");
        assert_eq!(default_name(".."), "");
    }

    #[test]
    fn etag_changes_with_version_and_id() {
        let echo = AgentId::internal("echo").expect("valid");
        let other = AgentId::internal("other").expect("valid");
        assert_ne!(etag_for(&echo, 1), etag_for(&echo, 2));
        assert_ne!(etag_for(&echo, 1), etag_for(&other, 1));
        assert_eq!(etag_for(&echo, 3), etag_for(&echo, 3));
        assert!(etag_for(&echo, 3).starts_with('"'));
    }

    #[test]
    fn upstreams_come_from_supported_interfaces() {
        let card = json!({"supportedInterfaces": [
            {"url": "http://127.0.0.1:9001", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "http://127.0.0.1:9002", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0", "tenant": "t1"}
        ]});
        let upstreams = Upstream::from_card(&card);
        assert_eq!(upstreams.len(), 2);
        assert_eq!(upstreams[1].tenant.as_deref(), Some("t1"));
        assert_eq!(upstreams[0].protocol_binding, "JSONRPC");
    }

    #[test]
    fn record_serialises_with_snake_case_keys() {
        let record = AgentRecord {
            id: AgentId::internal("echo").expect("valid"),
            name: "echo".into(),
            org: "convergio.local".into(),
            role: AgentRole::Worker,
            card: json!({"name": "Echo"}),
            upstreams: vec![],
            trust: TrustLevel::Registered,
            version: 1,
            created_at: now(),
            updated_at: now(),
            deleted_at: None,
        };
        let value = serde_json::to_value(&record).expect("serialises");
        for key in ["id", "created_at", "updated_at", "deleted_at", "upstreams"] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["id"], "convergio://agents/echo");
        let back: AgentRecord = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, record);
    }
}
