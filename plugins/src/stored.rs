//! [`StoredGuardrail`]: a guardrail rule naming a plugin stored in the
//! registry (`check: {plugin: {name}}`) rather than a file. The module it
//! runs is swapped atomically while calls go on: `convergio serve` polls the
//! plugin's newest version on every replica and installs each new one once
//! it compiled, so a new version takes over without a restart. A call
//! already running finishes on the module it started with.
//!
//! Until a version is installed (the plugin does not exist yet, or was
//! deleted, or its newest version is not a guardrail), the rule refuses
//! every payload it is selected for: guardrails fail closed.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde_json::Value;

use crate::guardrail::{BoxFuture, GuardFacts, Guardrail, Verdict};
use crate::wasm_guardrail::WasmGuardrail;
use crate::PluginError;

/// The version a [`StoredGuardrail`] runs.
#[derive(Debug)]
struct Installed {
    version: i64,
    sha256: String,
    guardrail: WasmGuardrail,
}

/// A guardrail whose module is a stored plugin's newest version.
#[derive(Debug)]
pub struct StoredGuardrail {
    name: String,
    plugin: String,
    installed: ArcSwapOption<Installed>,
}

// === impl StoredGuardrail ===

impl StoredGuardrail {
    /// The rule `name` running the stored plugin `plugin`, nothing
    /// installed yet.
    pub fn new(name: impl Into<String>, plugin: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            plugin: plugin.into(),
            installed: ArcSwapOption::empty(),
        }
    }

    /// The stored plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The installed version's number and SHA-256, if any.
    pub fn installed(&self) -> Option<(i64, String)> {
        self.installed
            .load_full()
            .map(|installed| (installed.version, installed.sha256.clone()))
    }

    /// Makes `guardrail` (compiled from `version`, whose hash is `sha256`)
    /// the one every later call runs.
    pub fn install(&self, version: i64, sha256: &str, guardrail: WasmGuardrail) {
        self.installed.store(Some(Arc::new(Installed {
            version,
            sha256: sha256.to_owned(),
            guardrail,
        })));
    }

    /// Uninstalls: every later call is refused until a version is installed.
    pub fn clear(&self) {
        self.installed.store(None);
    }
}

impl Guardrail for StoredGuardrail {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError> {
        futures_executor::block_on(self.check_async(facts, payload))
    }

    fn check_async<'a>(
        &'a self,
        facts: &'a GuardFacts<'a>,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>> {
        // The version installed when the call starts, to its end.
        let installed = self.installed.load_full();
        Box::pin(async move {
            match installed {
                Some(installed) => installed.guardrail.guard(facts, payload).await,
                None => Err(PluginError::Unavailable {
                    detail: format!("no version of the plugin {} is installed", self.plugin),
                }),
            }
        })
    }
}
