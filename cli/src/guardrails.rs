//! The `guardrails:` section made real at start-up (issue 21): the plugin
//! runtime is started only when a rule needs one (a `wasm` file), and the
//! guardrails are handed to the gateway.

use anyhow::Context;
use convergio_plugins::config::CheckSpec;
use convergio_plugins::{Guardrails, GuardrailsConfig, PluginRuntime};

/// Builds the configured guardrails (none configured: an empty chain,
/// which costs the gateway one check per payload).
pub fn build(config: &GuardrailsConfig) -> anyhow::Result<Guardrails> {
    let needs_runtime = config
        .rules
        .iter()
        .any(|rule| matches!(rule.check, CheckSpec::Wasm { .. }));
    let runtime = if needs_runtime {
        Some(PluginRuntime::new(config.sandbox.clone()).context("starting the plugin runtime")?)
    } else {
        None
    };
    Guardrails::from_config(config, runtime.as_ref()).context("building the guardrails")
}
