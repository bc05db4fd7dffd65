//! The `guardrails:` configuration section: the sandbox's bounds and the
//! guardrails in the order they run, each with where it applies (agents,
//! skills, caller organisations, directions; an empty list is "all").
//!
//! ```yaml
//! guardrails:
//!   rules:
//!     - name: no-cards
//!       check: { redact: { detect: [card], action: deny } }
//!       directions: [request]
//!       orgs: [acme.example]
//!     - name: pii
//!       check: { redact: { detect: [email, secret] } }
//!     - name: keywords
//!       check: { wasm: { file: plugins/examples/keyword-guardrail.wasm } }
//!     - name: house-rules
//!       check: { plugin: { name: house-rules } }
//!     - name: strict-pii               # where policy permits apply_guardrail
//!       check: { redact: { detect: [email], action: deny } }
//!       by_policy: true
//! ```
//!
//! And the `plugins:` section ([`PluginsConfig`]): the bound on an uploaded
//! module, how often each replica looks for a stored plugin's new version,
//! the bounds on plugin agents' calls to other agents, whether only signed
//! plugins run, the capabilities versions may be granted
//! (`allow_grants`) and the values the `env` grant reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::builtin::{Detector, RedactAction};
use crate::calls::AgentCallLimits;
use crate::grants::{Grant, Grants};
use crate::guardrail::Direction;
use crate::runtime::SandboxLimits;

/// The `guardrails:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    /// Bounds on every plugin call (guardrail plugins and plugin agents).
    pub sandbox: SandboxLimits,
    /// The guardrails, in the order they run on a payload.
    pub rules: Vec<GuardrailSpec>,
}

/// One guardrail and where it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSpec {
    /// The name shown in errors and audit records.
    pub name: String,
    /// What it checks.
    #[serde(deserialize_with = "check_from_map")]
    pub check: CheckSpec,
    /// `request`, `response` or both (empty: both).
    #[serde(default)]
    pub directions: Vec<Direction>,
    /// Agent names it applies to (empty: every agent).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Skills (`message.metadata.skill`) it applies to (empty: any).
    #[serde(default)]
    pub skills: Vec<String>,
    /// Caller organisations it applies to (empty: every caller).
    #[serde(default)]
    pub orgs: Vec<String>,
    /// Run only where Cedar policy also switches it on: the gateway asks
    /// `apply_guardrail` on the agent called, with this rule's name in
    /// `context.guardrail` and the direction in `context.direction`
    /// (default: false, the lists above decide alone).
    #[serde(default)]
    pub by_policy: bool,
}

/// Reads a [`CheckSpec`] written as a one-key map (`{redact: {…}}`) from
/// any format: serde_yaml 0.9 reads an externally tagged enum only from a
/// YAML tag (`!redact`), so the documented map form is read as a JSON value
/// first.
fn check_from_map<'de, D>(deserializer: D) -> Result<CheckSpec, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// What a guardrail checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckSpec {
    /// Refuse parts larger than `max_bytes`.
    PartSize {
        /// The largest part allowed, in bytes.
        max_bytes: usize,
    },
    /// Refuse parts whose media type is not listed (`type/*` allowed).
    MediaTypes {
        /// The media types allowed.
        allow: Vec<String>,
    },
    /// Redact (or refuse) e-mail addresses, card numbers, secrets.
    Redact {
        /// What to look for.
        detect: Vec<Detector>,
        /// Redact in place (default) or refuse the payload.
        #[serde(default)]
        action: RedactAction,
    },
    /// A guardrail plugin (ABI v1) read from a file at start-up.
    Wasm {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// A guardrail plugin stored in the registry (`convergio plugins add`):
    /// its newest version runs, followed without a restart.
    Plugin {
        /// The stored plugin's name.
        name: String,
    },
}

/// The `plugins:` section: stored plugins (issue 21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The largest module an upload may carry, in bytes (default 8 MiB):
    /// `POST /v1/plugins/{name}` answers 413 above it.
    pub max_module_bytes: usize,
    /// How often every replica polls the newest version of each stored
    /// plugin it runs, in seconds (default 1).
    pub watch_interval_seconds: u64,
    /// Plugin agents one replica serves at once (default 8): each takes a
    /// loopback slot bound at start-up.
    pub max_agents: usize,
    /// Bounds on the agent calls (`call_agent`) one plugin agent message
    /// makes: count, shared wall-clock budget, request and reply sizes.
    pub agent_calls: AgentCallLimits,
    /// Run only signed plugins (default false). When on, an upload without
    /// a `Convergio-Plugin-Signature` is refused (422,
    /// `SIGNATURE_REQUIRED`, nothing stored), and a replica neither
    /// installs nor serves a stored version that was uploaded unsigned
    /// (before the switch was turned on): a guardrail rule naming it
    /// refuses with `GUARDRAIL_UNAVAILABLE`, a plugin agent is not served
    /// (and deregistered if it was) until a signed version is uploaded.
    pub require_signed: bool,
    /// The capabilities an uploaded version may be granted (`clock`,
    /// `random`, `env`; default none; files and the network are never
    /// grantable). An upload declaring another is refused (422,
    /// `GRANT_NOT_ALLOWED`, nothing stored), and a replica neither installs
    /// nor serves a stored version declaring a grant its config does not
    /// allow (a guardrail rule naming it refuses with
    /// `GUARDRAIL_UNAVAILABLE`, a plugin agent is not served).
    pub allow_grants: Vec<Grant>,
    /// The values a plugin granted `env` reads with `convergio.env(name)`
    /// (default none). Never the process environment, which holds the
    /// gateway's own secrets: only what is written here.
    pub env: BTreeMap<String, String>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: 8 * 1024 * 1024,
            watch_interval_seconds: 1,
            max_agents: 8,
            agent_calls: AgentCallLimits::default(),
            require_signed: false,
            allow_grants: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

// === impl PluginsConfig ===

impl PluginsConfig {
    /// `allow_grants` as a set.
    pub fn allowed_grants(&self) -> Grants {
        self.allow_grants.iter().copied().collect()
    }
}
