//! [`WasmGuardrail`]: a guardrail that is a sandboxed plugin speaking ABI v1
//! (see the crate README): the gateway writes one JSON document (the facts
//! and the payload) into the module's memory, calls `guard`, and reads back
//! a JSON verdict. A module that fails in any way is an error, which the
//! gateway treats as a refusal (fail closed).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::grants::Grants;
use crate::guardrail::{BoxFuture, GuardFacts, Guardrail, Verdict};
use crate::runtime::{LoadedModule, PluginRuntime, ABI_VERSION};
use crate::PluginError;

/// The export a guardrail plugin runs.
pub const GUARD_EXPORT: &str = "guard";

/// A guardrail plugin, loaded and ready to run.
#[derive(Clone, Debug)]
pub struct WasmGuardrail {
    name: String,
    runtime: PluginRuntime,
    module: Arc<LoadedModule>,
}

/// The answer a plugin gives, as ABI v1 spells it.
#[derive(Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase", deny_unknown_fields)]
enum WireVerdict {
    Allow,
    Deny {
        reason: String,
        #[serde(default)]
        message: Option<String>,
    },
    Modify {
        payload: Value,
    },
}

// === impl WasmGuardrail ===

impl WasmGuardrail {
    /// Compiles and checks `bytes` as the guardrail named `name`.
    pub fn load(runtime: &PluginRuntime, name: &str, bytes: &[u8]) -> Result<Self, PluginError> {
        Self::load_granted(runtime, name, bytes, Grants::NONE)
    }

    /// Compiles and checks `bytes` as the guardrail named `name`, which may
    /// import the host functions of `grants` ([`crate::grants`]).
    pub fn load_granted(
        runtime: &PluginRuntime,
        name: &str,
        bytes: &[u8],
        grants: Grants,
    ) -> Result<Self, PluginError> {
        let module = runtime.load_granted(name, bytes, GUARD_EXPORT, grants)?;
        Ok(Self {
            name: name.to_owned(),
            runtime: runtime.clone(),
            module: Arc::new(module),
        })
    }
}

impl WasmGuardrail {
    /// Runs `guard` on the facts and `payload`, answering its verdict.
    pub async fn guard(
        &self,
        facts: &GuardFacts<'_>,
        payload: &Value,
    ) -> Result<Verdict, PluginError> {
        let input = json!({
            "abi": ABI_VERSION,
            "direction": facts.direction,
            "agent": facts.agent,
            "skill": facts.skill,
            "org": facts.org,
            "subject": facts.subject,
            "payload": payload,
        });
        let input = serde_json::to_vec(&input).map_err(|error| PluginError::BadOutput {
            plugin: self.name.clone(),
            detail: format!("encoding the input failed: {error}"),
        })?;
        let output = self
            .runtime
            .call(&self.module, GUARD_EXPORT, &input)
            .await?;
        let verdict: WireVerdict =
            serde_json::from_slice(&output).map_err(|error| PluginError::BadOutput {
                plugin: self.name.clone(),
                detail: format!("not an ABI v1 verdict: {error}"),
            })?;
        Ok(match verdict {
            WireVerdict::Allow => Verdict::Allow,
            WireVerdict::Deny { reason, message } => Verdict::Deny {
                reason: convergio_schemas::echo(&reason).into_owned(),
                message: message
                    .map(|message| convergio_schemas::echo(&message).into_owned())
                    .unwrap_or_else(|| format!("refused by {}", self.name)),
            },
            WireVerdict::Modify { payload } if payload.is_object() => Verdict::Modify(payload),
            WireVerdict::Modify { .. } => {
                return Err(PluginError::BadOutput {
                    plugin: self.name.clone(),
                    detail: "a modified payload must be an object".into(),
                })
            }
        })
    }
}

impl Guardrail for WasmGuardrail {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError> {
        futures_executor::block_on(self.guard(facts, payload))
    }

    fn check_async<'a>(
        &'a self,
        facts: &'a GuardFacts<'a>,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>> {
        Box::pin(self.guard(facts, payload))
    }
}
