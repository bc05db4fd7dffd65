//! The verified identity of a caller: what every layer after
//! authentication, the policy engine and the audit log reason about.

use serde::{Deserialize, Serialize};

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No credentials; only where configuration allows anonymous access.
    Anonymous,
    /// A bearer JWT verified against a configured key set.
    Jwt,
    /// An API key issued by this deployment.
    ApiKey,
    /// A TLS client certificate from a trusted CA.
    Mtls,
    /// The bootstrap administrator token.
    AdminToken,
    /// The server itself (its own example agents, graph runs it starts).
    System,
    /// Another organisation's gateway: a signed cross-organisation call
    /// verified against the keys an administrator approved for that peer
    /// (`org` is the peer's domain; it never carries scopes).
    Peer,
}

/// A caller whose identity has been verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject (JWT `sub`, API key id, certificate SAN).
    pub subject: String,
    /// The caller's organisation domain, when known.
    pub org: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// How the identity was established.
    pub method: AuthMethod,
}

// === impl Principal ===

impl Principal {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".to_owned(),
            org: None,
            scopes: Vec::new(),
            method: AuthMethod::Anonymous,
        }
    }

    /// The server acting on its own behalf.
    pub fn system() -> Self {
        Self {
            subject: "system".to_owned(),
            org: None,
            scopes: vec!["admin".to_owned()],
            method: AuthMethod::System,
        }
    }

    /// The key that owns tasks and contexts this principal creates:
    /// `org/subject`, so two organisations' subjects never collide.
    pub fn owner_key(&self) -> String {
        match &self.org {
            Some(org) => format!("{org}/{}", self.subject),
            None => self.subject.clone(),
        }
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| held == scope)
    }
}

/// Marks an in-process request made by a graph run on behalf of its caller.
/// The orchestrator's gateway dispatcher inserts it as a request extension
/// (with the run caller's [`Principal`]); policy sees it as the "from a graph
/// run" context. Outside requests can never carry it: extensions are not
/// wire data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphCall {
    /// The run the call belongs to.
    pub run_id: String,
    /// The graph the run executes.
    pub graph: String,
    /// The node making the call.
    pub node_id: String,
    /// The agent the node calls, by its name here (`None` for another
    /// organisation's agent): a node may use an agent-scoped memory
    /// namespace (issue 20) only when it calls that agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}
