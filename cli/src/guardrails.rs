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
//!
//! Likewise a newest version declaring a capability grant this replica's
//! `plugins.allow_grants` does not allow (the config changed since the
//! upload, or replicas disagree) is never installed: the rule refuses
//! until an allowed version is uploaded, logged once with the grant.
//! Versions that are installed are compiled with their declared grants.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use convergio_auth::plugin_signature::module_sha256;
use convergio_plugins::{
    Grants, Guardrail, Guardrails, GuardrailsConfig, PluginRuntime, PluginsConfig, StoredGuardrail,
    WasmGuardrail,
};
use convergio_registry::plugins::{PluginKind, PluginStore, PluginVersionRow};

/// Builds the configured guardrails and the plugin runtime (none
/// configured: an empty chain, which costs the gateway one check per
/// payload). The runtime's `env` host function reads `plugins.env`.
pub fn build(
    config: &GuardrailsConfig,
    plugins: &PluginsConfig,
) -> anyhow::Result<(Guardrails, PluginRuntime)> {
    let runtime = PluginRuntime::new(config.sandbox.clone())
        .context("starting the plugin runtime")?
        .with_env(plugins.env.clone());
    let guardrails =
        Guardrails::from_config(config, Some(&runtime)).context("building the guardrails")?;
    Ok((guardrails, runtime))
}

/// Which stored versions this replica runs (`plugins.require_signed`,
/// `plugins.allow_grants`).
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Only versions stored with a signature that verified.
    pub require_signed: bool,
    /// Only versions whose every grant is in this set.
    pub allow_grants: Grants,
}

/// The grants `stored` (a version's declared names) asks for, if `allowed`
/// holds every one; otherwise why not (a name unknown to this build is
/// not allowed either: fail closed).
pub fn admitted_grants(stored: &[String], allowed: Grants) -> Result<Grants, String> {
    let grants = Grants::parse_names(stored).map_err(|error| error.to_string())?;
    let refused = grants.not_in(allowed);
    if refused.is_empty() {
        Ok(grants)
    } else {
        let names: Vec<&str> = refused.iter().map(|grant| grant.as_str()).collect();
        Err(format!(
            "it declares the grant {} and plugins.allow_grants here allows {allowed}",
            names.join(", ")
        ))
    }
}

/// One followed rule and the version that last failed to install (so a
/// broken version is reported once, not every interval).
struct Followed {
    rule: Arc<StoredGuardrail>,
    failed: Option<(i64, String)>,
}

/// Installs each stored guardrail's newest version now, then follows new
/// versions every `interval` in a task that ends with the runtime; only
/// versions `admission` lets in are installed.
pub async fn follow_stored(
    guardrails: &Guardrails,
    store: Arc<dyn PluginStore>,
    runtime: PluginRuntime,
    interval: Duration,
    admission: Admission,
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
        sync(one, store.as_ref(), &runtime, admission).await;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            for one in &mut followed {
                sync(one, store.as_ref(), &runtime, admission).await;
            }
        }
    });
}

/// Brings one rule to its plugin's newest version.
async fn sync(
    one: &mut Followed,
    store: &dyn PluginStore,
    runtime: &PluginRuntime,
    admission: Admission,
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
    let stored = match stored_version(store, &plugin, latest.version).await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(plugin = %plugin, error = %format!("{error:#}"), "reading a guardrail plugin version failed; retrying at the next interval");
            return;
        }
    };
    if admission.require_signed && stored.signed_by.is_none() {
        tracing::warn!(guardrail = %rule.name(), plugin = %plugin, version = latest.version, "a guardrail plugin version is unsigned and plugins.require_signed is on: not installed; its rule refuses until a signed version is uploaded");
        one.failed = Some(wanted);
        rule.clear();
        return;
    }
    let grants = match admitted_grants(&stored.grants, admission.allow_grants) {
        Ok(grants) => grants,
        Err(reason) => {
            tracing::warn!(guardrail = %rule.name(), plugin = %plugin, version = latest.version, %reason, "a guardrail plugin version declares a grant this replica does not allow: not installed; its rule refuses until an allowed version is uploaded");
            one.failed = Some(wanted);
            rule.clear();
            return;
        }
    };
    match install(rule, store, runtime, latest.version, &latest.sha256, grants).await {
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

/// `version` of `plugin` as stored: whether it was signed, its grants
/// (read only when a new version is seen, not at every poll).
async fn stored_version(
    store: &dyn PluginStore,
    plugin: &str,
    version: i64,
) -> anyhow::Result<PluginVersionRow> {
    let row = store
        .get(plugin)
        .await
        .context("reading the plugin's versions")?
        .context("the plugin was deleted meanwhile")?;
    row.versions
        .into_iter()
        .find(|stored| stored.version == version)
        .context("the version was deleted meanwhile")
}

async fn install(
    rule: &StoredGuardrail,
    store: &dyn PluginStore,
    runtime: &PluginRuntime,
    version: i64,
    sha256: &str,
    grants: Grants,
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
    let guardrail = tokio::task::spawn_blocking(move || {
        WasmGuardrail::load_granted(&runtime, &name, &module, grants)
    })
    .await
    .context("compiling the module")??;
    rule.install(version, sha256, guardrail);
    Ok(())
}
