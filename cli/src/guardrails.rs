//! The `guardrails:` section made real at start-up (issue 21), and the
//! stored guardrail plugins kept at their newest version.
//!
//! The plugin runtime is always started: the plugins API compiles every
//! uploaded module with it, and the guardrails run `wasm` files and stored
//! plugins on it. Each rule naming a stored plugin (`check: {plugin:
//! {name}}`) is followed by [`follow_stored`]: a first pass before the
//! gateway serves, then a poll of the plugin's newest version (one indexed
//! row) every `plugins.watch_interval_seconds` on every replica. A new
//! version (a new number or hash) is read, its hash checked, compiled off
//! the event loop and swapped in atomically; calls already running finish
//! on the version they started with. A deleted plugin, or one of another
//! kind, is uninstalled (its rule then refuses: guardrails fail closed); a
//! version that does not compile is logged once and the installed one kept.
//!
//! With `plugins.require_signed`, a newest version that was stored without
//! a signature (before the switch was turned on) is never installed: the
//! rule is uninstalled and refuses (`GUARDRAIL_UNAVAILABLE`) until a signed
//! version is uploaded, logged once. The newest version is what an
//! operator uploaded last, so an older signed one is not run instead.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use convergio_auth::plugin_signature::module_sha256;
use convergio_plugins::{
    Guardrail, Guardrails, GuardrailsConfig, PluginRuntime, StoredGuardrail, WasmGuardrail,
};
use convergio_registry::plugins::{PluginKind, PluginStore};

/// Builds the configured guardrails and the plugin runtime (none
/// configured: an empty chain, which costs the gateway one check per
/// payload).
pub fn build(config: &GuardrailsConfig) -> anyhow::Result<(Guardrails, PluginRuntime)> {
    let runtime =
        PluginRuntime::new(config.sandbox.clone()).context("starting the plugin runtime")?;
    let guardrails =
        Guardrails::from_config(config, Some(&runtime)).context("building the guardrails")?;
    Ok((guardrails, runtime))
}

/// One followed rule and the version that last failed to install (so a
/// broken version is reported once, not every interval).
struct Followed {
    rule: Arc<StoredGuardrail>,
    failed: Option<(i64, String)>,
}

/// Installs each stored guardrail's newest version now, then follows new
/// versions every `interval` in a task that ends with the runtime; with
/// `require_signed`, only signed versions are installed.
pub async fn follow_stored(
    guardrails: &Guardrails,
    store: Arc<dyn PluginStore>,
    runtime: PluginRuntime,
    interval: Duration,
    require_signed: bool,
) {
    let mut followed: Vec<Followed> = guardrails
        .stored_plugins()
        .iter()
        .map(|rule| Followed {
            rule: rule.clone(),
            failed: None,
        })
        .collect();
    if followed.is_empty() {
        return;
    }
    for one in &mut followed {
        sync(one, store.as_ref(), &runtime, require_signed).await;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            for one in &mut followed {
                sync(one, store.as_ref(), &runtime, require_signed).await;
            }
        }
    });
}

/// Brings one rule to its plugin's newest version.
async fn sync(
    one: &mut Followed,
    store: &dyn PluginStore,
    runtime: &PluginRuntime,
    require_signed: bool,
) {
    let rule = &one.rule;
    let plugin = rule.plugin().to_owned();
    let latest = match store.latest(&plugin).await {
        Ok(latest) => latest,
        Err(error) => {
            tracing::warn!(plugin = %plugin, %error, "reading a guardrail plugin's newest version failed; the installed one stays");
            return;
        }
    };
    let Some(latest) = latest else {
        if rule.installed().is_some() {
            tracing::warn!(guardrail = %rule.name(), plugin = %plugin, "the guardrail plugin was deleted; its rule now refuses");
            rule.clear();
        }
        return;
    };
    if latest.kind != PluginKind::Guardrail {
        if rule.installed().is_some() || one.failed.is_none() {
            tracing::warn!(guardrail = %rule.name(), plugin = %plugin, "the plugin is not a guardrail; its rule refuses");
            one.failed = Some((latest.version, latest.sha256.clone()));
        }
        rule.clear();
        return;
    }
    let wanted = (latest.version, latest.sha256.clone());
    if rule.installed().as_ref() == Some(&wanted) || one.failed.as_ref() == Some(&wanted) {
        return;
    }
    if require_signed {
        match signed(store, &plugin, latest.version).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(guardrail = %rule.name(), plugin = %plugin, version = latest.version, "a guardrail plugin version is unsigned and plugins.require_signed is on: not installed; its rule refuses until a signed version is uploaded");
                one.failed = Some(wanted);
                rule.clear();
                return;
            }
            Err(error) => {
                tracing::warn!(plugin = %plugin, error = %format!("{error:#}"), "reading whether a guardrail plugin version is signed failed; retrying at the next interval");
                return;
            }
        }
    }
    match install(rule, store, runtime, latest.version, &latest.sha256).await {
        Ok(()) => {
            one.failed = None;
            tracing::info!(guardrail = %rule.name(), plugin = %plugin, version = latest.version, sha256 = %latest.sha256, "guardrail plugin version installed");
        }
        Err(error) => {
            one.failed = Some(wanted);
            tracing::warn!(guardrail = %rule.name(), plugin = %plugin, version = latest.version, error = %format!("{error:#}"), "a guardrail plugin version could not be installed; the installed one stays");
        }
    }
}

/// Whether `version` of `plugin` was stored with a signature that
/// verified (read only when a new version is seen, not at every poll).
async fn signed(store: &dyn PluginStore, plugin: &str, version: i64) -> anyhow::Result<bool> {
    let row = store
        .get(plugin)
        .await
        .context("reading the plugin's versions")?
        .context("the plugin was deleted meanwhile")?;
    let stored = row
        .versions
        .iter()
        .find(|stored| stored.version == version)
        .context("the version was deleted meanwhile")?;
    Ok(stored.signed_by.is_some())
}

async fn install(
    rule: &StoredGuardrail,
    store: &dyn PluginStore,
    runtime: &PluginRuntime,
    version: i64,
    sha256: &str,
) -> anyhow::Result<()> {
    let module = store
        .module(rule.plugin(), version)
        .await
        .context("reading the module")?
        .context("the version was deleted meanwhile")?;
    anyhow::ensure!(
        module_sha256(&module) == sha256,
        "the stored module does not match its hash"
    );
    let runtime = runtime.clone();
    let name = rule.name().to_owned();
    let guardrail =
        tokio::task::spawn_blocking(move || WasmGuardrail::load(&runtime, &name, &module))
            .await
            .context("compiling the module")??;
    rule.install(version, sha256, guardrail);
    Ok(())
}
