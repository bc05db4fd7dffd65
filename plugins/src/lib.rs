//! Sandboxed WebAssembly plugins and A2A payload guardrails (issue #21).
//!
//! - [`runtime`]: the wasmtime engine (pooling allocator, fuel, epoch
//!   deadline, memory and table limits, no imports but the `convergio` host
//!   module) and one sandboxed call of a module's exported function;
//! - [`guardrail`]: the [`Guardrail`] trait, its [`Verdict`]s and what a
//!   guardrail sees of a call ([`GuardFacts`]);
//! - [`builtin`]: the guardrails written in Rust (part size, MIME types,
//!   redaction of e-mail addresses, card numbers and secrets);
//! - [`wasm_guardrail`]: a guardrail that is a plugin (ABI v1, see README);
//! - [`config`] and [`chain`]: the `guardrails:` configuration section and
//!   the per call selection by agent, skill, organisation and direction.
//!
//! The crate does no network or database I/O: the gateway hands it payloads
//! and applies its verdicts.

pub mod builtin;
pub mod chain;
pub mod config;
pub mod error;
pub mod guardrail;
pub mod runtime;
pub mod wasm_guardrail;

pub use chain::{Guardrails, Outcome};
pub use config::{GuardrailSpec, GuardrailsConfig};
pub use error::PluginError;
pub use guardrail::{Direction, GuardFacts, Guardrail, Verdict};
pub use runtime::{PluginRuntime, SandboxLimits};
pub use wasm_guardrail::WasmGuardrail;
