//! Sandboxed WebAssembly plugins and A2A payload guardrails (issue #21).
//!
//! - [`runtime`]: the wasmtime engine (pooling allocator, fuel, epoch
//!   deadline, memory and table limits, no imports but the `convergio` host
//!   module, and of it only what the version was granted) and one sandboxed call of a module's exported function;
//! - [`guardrail`]: the [`Guardrail`] trait, its [`Verdict`]s and what a
//!   guardrail sees of a call ([`GuardFacts`]);
//! - [`builtin`]: the guardrails written in Rust (part size, MIME types,
//!   redaction of e-mail addresses, card numbers and secrets);
//! - [`wasm_guardrail`]: a guardrail that is a plugin (ABI v1, see README);
//! - [`agent`]: a plugin agent (agent ABI v1): an A2A message in, parts
//!   or an error out;
//! - [`calls`]: a plugin agent calling other agents (`call_agent`) through
//!   an [`AgentCaller`] the serving process provides, within
//!   [`AgentCallLimits`];
//! - [`grants`]: the capabilities a plugin version may be granted
//!   (`clock`, `random`, `env`; never files or the network) and their host
//!   functions;
//! - [`stored`]: a guardrail running a plugin stored in the registry, its
//!   module swapped atomically when a new version is installed;
//! - [`config`] and [`chain`]: the `guardrails:` configuration section and
//!   the per call selection by agent, skill, organisation and direction.
//!
//! The crate does no network or database I/O: the gateway hands it payloads
//! and applies its verdicts.

pub mod agent;
pub mod builtin;
pub mod calls;
pub mod chain;
pub mod config;
pub mod error;
pub mod grants;
pub mod guardrail;
pub mod runtime;
pub mod stored;
pub mod wasm_guardrail;

pub use agent::{AgentAnswer, WasmAgent};
pub use calls::{
    AgentCall, AgentCallError, AgentCallLimits, AgentCaller, AgentCalling, NoAgentCalls,
};
pub use chain::{Guardrails, Outcome};
pub use config::{GuardrailSpec, GuardrailsConfig, PluginsConfig};
pub use error::PluginError;
pub use grants::{Grant, Grants};
pub use guardrail::{Direction, GuardFacts, Guardrail, Verdict};
pub use runtime::{PluginRuntime, SandboxLimits};
pub use stored::StoredGuardrail;
pub use wasm_guardrail::WasmGuardrail;
