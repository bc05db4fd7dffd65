//! [`WasmAgent`]: a plugin agent (agent ABI v1, see the crate README). The
//! host writes one JSON document (the A2A message and its context) into the
//! module's memory, calls `handle`, and reads back either the answer's
//! parts or an error the agent reports. [`WasmAgent::handle`] is
//! asynchronous and bounded by the sandbox (the module yields to the
//! executor at every epoch tick); [`WasmAgent::load`] reads the declaration
//! on the current thread, so it belongs on a blocking one.
//!
//! A module may also export `describe(ptr, len) -> i64`, answering its
//! declaration (`{"description": …, "skills": [{"id", "name",
//! "description", "tags"}]}`), read once when a version is loaded; without
//! it the agent is described by its name.
//!
//! A plugin agent may import `convergio.call_agent` to call other agents
//! while it handles a message ([`crate::calls`]): the calls go through the
//! [`AgentCalling`] it was loaded with. `describe` never may (its calls are
//! refused).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::calls::{AgentCalling, InvocationCalls};
use crate::grants::Grants;
use crate::runtime::{LoadedModule, PluginRuntime, ABI_VERSION, AGENT_EXPORT};
use crate::PluginError;

/// The optional export answering a plugin agent's declaration.
pub const DESCRIBE_EXPORT: &str = "describe";

/// What a plugin agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentAnswer {
    /// The parts of its reply (A2A 1.0 parts).
    Parts(Vec<Value>),
    /// It declined, with its code and message (the task fails with them).
    Error {
        /// Its stable code.
        code: String,
        /// Its message.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireError {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireAnswer {
    #[serde(default)]
    parts: Option<Vec<Value>>,
    #[serde(default)]
    error: Option<WireError>,
}

/// A plugin agent, loaded and ready to run.
#[derive(Clone, Debug)]
pub struct WasmAgent {
    name: String,
    runtime: PluginRuntime,
    module: Arc<LoadedModule>,
    declaration: Value,
    calling: AgentCalling,
}

// === impl WasmAgent ===

impl WasmAgent {
    /// [`Self::load_granted`] without any grant.
    pub fn load(
        runtime: &PluginRuntime,
        name: &str,
        bytes: &[u8],
        calling: AgentCalling,
    ) -> Result<Self, PluginError> {
        Self::load_granted(runtime, name, bytes, calling, Grants::NONE)
    }

    /// Compiles and checks `bytes` as the agent `name`, which may import
    /// the host functions of `grants` ([`crate::grants`]), reading its
    /// declaration when it exports `describe` (an empty object otherwise).
    /// Its `call_agent` calls go through `calling` ([`AgentCalling::none`]:
    /// every call refused).
    pub fn load_granted(
        runtime: &PluginRuntime,
        name: &str,
        bytes: &[u8],
        calling: AgentCalling,
        grants: Grants,
    ) -> Result<Self, PluginError> {
        let module = runtime.load_granted(name, bytes, AGENT_EXPORT, grants)?;
        let declaration = if module.exports(DESCRIBE_EXPORT) {
            let output = runtime.call_blocking(&module, DESCRIBE_EXPORT, br#"{"abi":1}"#)?;
            let declaration: Value =
                serde_json::from_slice(&output).map_err(|error| PluginError::BadOutput {
                    plugin: name.to_owned(),
                    detail: format!("the declaration is not JSON: {error}"),
                })?;
            if !declaration.is_object() {
                return Err(PluginError::BadOutput {
                    plugin: name.to_owned(),
                    detail: "the declaration must be an object".into(),
                });
            }
            declaration
        } else {
            json!({})
        };
        Ok(Self {
            name: name.to_owned(),
            runtime: runtime.clone(),
            module: Arc::new(module),
            declaration,
            calling,
        })
    }

    /// What `describe` answered (`{}` without it).
    pub fn declaration(&self) -> &Value {
        &self.declaration
    }

    /// Runs `handle` on `message` (an A2A 1.0 message) in `context_id`.
    pub async fn handle(
        &self,
        message: &Value,
        context_id: &str,
        task_id: &str,
    ) -> Result<AgentAnswer, PluginError> {
        let input = json!({
            "abi": ABI_VERSION,
            "message": message,
            "contextId": context_id,
            "taskId": task_id,
        });
        let input = serde_json::to_vec(&input).map_err(|error| PluginError::BadOutput {
            plugin: self.name.clone(),
            detail: format!("encoding the input failed: {error}"),
        })?;
        let calls = InvocationCalls::new(self.calling.clone(), task_id);
        let output = self
            .runtime
            .call_with(&self.module, AGENT_EXPORT, &input, Some(calls))
            .await?;
        let bad = |detail: String| PluginError::BadOutput {
            plugin: self.name.clone(),
            detail,
        };
        let answer: WireAnswer = serde_json::from_slice(&output)
            .map_err(|error| bad(format!("not an agent ABI v1 answer: {error}")))?;
        match (answer.parts, answer.error) {
            (Some(parts), None) if parts.iter().all(Value::is_object) => {
                Ok(AgentAnswer::Parts(parts))
            }
            (Some(_), None) => Err(bad("every part must be an object".into())),
            (None, Some(error)) => Ok(AgentAnswer::Error {
                code: convergio_schemas::echo(&error.code).into_owned(),
                message: error
                    .message
                    .map(|message| convergio_schemas::echo(&message).into_owned())
                    .unwrap_or_else(|| format!("{} declined", self.name)),
            }),
            _ => Err(bad("an answer has either parts or an error".into())),
        }
    }
}
