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
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::builtin::{Detector, RedactAction};
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
}
