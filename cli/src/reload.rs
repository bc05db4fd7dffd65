//! Hot reload (issue 22): on SIGHUP, and when the config file or a TLS
//! file it names changes, the configuration is read and validated again by
//! the start-up code (same file, same environment, same flags), every
//! reloadable piece is built, and only when all of them built are they
//! swapped in. Reloadable: the listener's certificate, key, client CA and
//! client-certificate mode; the SSRF allow-list; the upstream credentials
//! (bearer tokens, CA bundles, client certificates, re-read from their
//! files); the quotas; the log filter. Established connections keep the
//! TLS session they have.
//!
//! A reload is refused whole (nothing changes, the error is logged with its
//! cause and counted in `convergio_config_reloads_total{result="refused"}`)
//! when the new configuration is invalid, when a piece fails to build (a
//! missing or mismatched certificate, a bad log filter), or when it changes
//! a setting that only a restart can apply (the listen address, the
//! database, authentication, model agents, ...): the error names
//! those settings. Refusing whole is the simpler contract for an operator:
//! what runs is always exactly one file's version.
//!
//! Changes are found by reading the config file, the listener's TLS files
//! and the upstream credentials' files every
//! `reload.watch_interval_seconds` and comparing their bytes, not by inotify
//! (`notify`): certbot and cert-manager replace files by renaming them or a
//! symlinked directory, which a watch on the old inode misses, and reading a
//! few small files once a second costs nothing. A change is applied once the
//! files read the same on two checks in a row, so a certificate written
//! before its key is not loaded half-renewed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use convergio_gateway::a2a::UpstreamCredentials;
use convergio_gateway::metrics::GatewayMetrics;
use convergio_gateway::ssrf::AllowList;
use convergio_gateway::tls::{TlsAcceptor, TlsServerConfig};
use convergio_policy::{QuotaConfig, Quotas};

use crate::config::{Config, ConfigError, ConfigFile, Overrides};
use crate::security_config::{load_upstream_credentials, upstream_credential_files};
use crate::telemetry::LogFilter;

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration does not read or validate.
    #[error("the new configuration is invalid")]
    Invalid(#[source] ConfigError),
    /// It changes settings that only a restart applies.
    #[error("the new configuration changes settings that need a restart: {}", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// The listener's TLS files do not load.
    #[error("the new tls listener configuration does not load")]
    Tls(#[source] convergio_gateway::GatewayError),
    /// An upstream credential does not load (a token file, a CA bundle, a
    /// client certificate); the cause names the agent and the file, never
    /// the secret.
    #[error("the new upstream credentials do not load: {0}")]
    UpstreamCredentials(String),
    /// The log filter does not parse.
    #[error("invalid log.filter")]
    LogFilter(#[source] tracing_subscriber::filter::ParseError),
}

/// The live pieces a reload swaps, each the same handle the server was
/// built with.
#[derive(Debug, Clone)]
pub struct LivePieces {
    /// The TLS listener's acceptor, when TLS is on.
    pub tls: Option<TlsAcceptor>,
    /// The allow-list as configured (federation's).
    pub configured_allow: AllowList,
    /// The allow-list upstream calls use: the configured one plus the
    /// server's own loopback sockets.
    pub upstream_allow: AllowList,
    /// The server's own loopback sockets (example agents, model slots).
    pub own_sockets: Vec<SocketAddr>,
    /// The credentials presented to upstreams.
    pub upstream_credentials: UpstreamCredentials,
    /// The quota enforcer.
    pub quotas: Arc<Quotas>,
    /// The log lines' filter.
    pub log_filter: LogFilter,
}

/// Where the configuration comes from: what start-up read.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The `--config` file, if any.
    pub path: Option<PathBuf>,
    /// The environment as the process started with it.
    pub environment: HashMap<String, String>,
    /// The command-line flags.
    pub overrides: Overrides,
}

/// Re-reads the configuration and swaps the reloadable pieces.
#[derive(Debug)]
pub struct Reloader {
    source: ConfigSource,
    live: LivePieces,
    metrics: Arc<GatewayMetrics>,
    current: Mutex<Config>,
}

/// Everything a reload swaps in, built before any of it is.
struct Prepared {
    tls: Option<TlsServerConfig>,
    upstream_allow: AllowList,
    upstream_credentials: UpstreamCredentials,
    quotas: QuotaConfig,
    log_filter: Option<tracing_subscriber::EnvFilter>,
}

// === impl ConfigSource ===

impl ConfigSource {
    /// Reads and validates the configuration as start-up does.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let file = match &self.path {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        Config::resolve(file, &self.environment, &self.overrides)
    }
}

// === impl Reloader ===

impl Reloader {
    /// A reloader of `live`, which the server runs with `current`.
    pub fn new(
        source: ConfigSource,
        current: Config,
        live: LivePieces,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        Self {
            source,
            live,
            metrics,
            current: Mutex::new(current),
        }
    }

    /// Reloads now: applied whole or refused whole, logged and counted.
    pub fn reload(&self, trigger: &'static str) -> Result<(), ReloadError> {
        let outcome = self.try_reload();
        self.metrics.record_config_reload(outcome.is_ok());
        match &outcome {
            Ok(()) => tracing::info!(trigger, "configuration reloaded"),
            Err(error) => tracing::error!(
                trigger,
                error = %chain(error),
                "configuration reload refused; the running configuration is unchanged"
            ),
        }
        outcome
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let next = self.source.load().map_err(ReloadError::Invalid)?;
        let fixed = needs_restart(&current, &next);
        if !fixed.is_empty() {
            return Err(ReloadError::NeedsRestart(fixed));
        }
        let prepared = self.prepare(&current, &next)?;
        // Every piece built: nothing below can fail.
        if let (Some(acceptor), Some(config)) = (&self.live.tls, prepared.tls) {
            acceptor.replace(config);
        }
        self.live.configured_allow.replace(&next.upstream_allow);
        self.live.upstream_allow.replace(&prepared.upstream_allow);
        self.live
            .upstream_credentials
            .replace(&prepared.upstream_credentials);
        self.live.quotas.reconfigure(prepared.quotas);
        if let Some(filter) = prepared.log_filter {
            self.live.log_filter.replace(filter);
        }
        *current = next;
        Ok(())
    }

    fn prepare(&self, current: &Config, next: &Config) -> Result<Prepared, ReloadError> {
        // The TLS files are read again even when their names did not
        // change: a renewed certificate is the same path.
        let tls = next
            .security
            .tls
            .as_ref()
            .map(TlsServerConfig::load)
            .transpose()
            .map_err(ReloadError::Tls)?;
        let mut upstream_allow = next.upstream_allow.clone();
        for socket in &self.live.own_sockets {
            upstream_allow.allow_socket(*socket);
        }
        // Read again whatever changed: a rotated token file is the same
        // path.
        let upstream_credentials = load_upstream_credentials(&next.security)
            .map(UpstreamCredentials::new)
            .map_err(|error| ReloadError::UpstreamCredentials(format!("{error:#}")))?;
        let log_filter = if next.log_filter == current.log_filter {
            None
        } else {
            Some(LogFilter::parse(&next.log_filter).map_err(ReloadError::LogFilter)?)
        };
        Ok(Prepared {
            tls,
            upstream_allow,
            upstream_credentials,
            quotas: next.quotas.clone().unwrap_or_default(),
            log_filter,
        })
    }

    /// The files whose change triggers a reload: the config file and the
    /// TLS files the running configuration names.
    fn watched_files(&self) -> Vec<PathBuf> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut files: Vec<PathBuf> = self.source.path.iter().cloned().collect();
        if let Some(tls) = &current.security.tls {
            files.push(tls.cert_file.clone());
            files.push(tls.key_file.clone());
            files.extend(tls.client_ca_file.clone());
        }
        files.extend(upstream_credential_files(&current.security));
        files
    }

    /// Reloads on SIGHUP and, every `interval` (none: never), when a
    /// watched file changed and then read the same once more. The SIGHUP
    /// handler is installed, and the watched files read, before this
    /// returns.
    pub fn spawn(self: Arc<Self>, interval: Option<Duration>) -> tokio::task::JoinHandle<()> {
        let mut hangup = hangup_signal();
        // What the server started with, read before this returns: a file
        // changed right after start-up is a change.
        let mut applied: Vec<Option<Vec<u8>>> = self
            .watched_files()
            .iter()
            .map(|file| std::fs::read(file).ok())
            .collect();
        tokio::spawn(async move {
            let mut seen = applied.clone();
            let mut ticks = interval.map(|interval| {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            loop {
                let trigger = tokio::select! {
                    () = next_hangup(&mut hangup) => "SIGHUP",
                    () = next_tick(&mut ticks) => "file change",
                };
                let files = self.watched_files();
                let now = snapshot(&files).await;
                if trigger == "file change" {
                    // Unchanged since the last reload, or still changing.
                    let stable = now == seen;
                    seen = now.clone();
                    if now == applied || !stable {
                        continue;
                    }
                }
                let reloader = self.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
                // Whatever the outcome, these files were judged: a refused
                // version is not retried until it changes again. What they
                // read before the reload, so a write during it is seen as
                // a change; read again only when the reload named others.
                let watched = self.watched_files();
                applied = if watched == files {
                    now
                } else {
                    snapshot(&watched).await
                };
                seen = applied.clone();
            }
        })
    }
}

/// The settings `next` changes that only a restart applies, by their
/// config-file names.
fn needs_restart(current: &Config, next: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            changed.push(name);
        }
    };
    check("data_dir", current.data_dir == next.data_dir);
    check("listen", current.listen == next.listen);
    check("database_url", current.database_url == next.database_url);
    check(
        "database_pool_size",
        current.database_pool_size == next.database_pool_size,
    );
    check("org_domain", current.org_domain == next.org_domain);
    check("admin_token", current.admin_token == next.admin_token);
    check("examples", current.examples == next.examples);
    check(
        "limits",
        current.max_body_bytes == next.max_body_bytes
            && current.request_timeout_seconds == next.request_timeout_seconds,
    );
    check("graphs", current.graphs == next.graphs);
    check("log.format", current.log_format == next.log_format);
    let (security, next_security) = (&current.security, &next.security);
    check(
        "auth",
        security.anonymous == next_security.anonymous
            && security.jwt == next_security.jwt
            && security.api_keys == next_security.api_keys
            && security.mtls == next_security.mtls,
    );
    check(
        "tls (turning the listener's TLS on or off)",
        security.tls.is_some() == next_security.tls.is_some(),
    );
    check("server", security.server == next_security.server);
    check("federation", current.federation == next.federation);
    check("retention", current.retention == next.retention);
    check("models", current.models == next.models);
    check("upstream", current.upstream == next.upstream);
    check("guardrails", current.guardrails == next.guardrails);
    check("plugins", current.plugins == next.plugins);
    check("telemetry", current.otlp == next.otlp);
    check("memory", current.memory == next.memory);
    check(
        "reload",
        current.reload_watch_interval_seconds == next.reload_watch_interval_seconds,
    );
    // A setting added to `Config` without a line above still needs a
    // restart: whatever differs once the reloadable ones are set aside.
    let mut rest = next.clone();
    rest.log_filter.clone_from(&current.log_filter);
    rest.quotas.clone_from(&current.quotas);
    rest.upstream_allow = current.upstream_allow.clone();
    rest.security
        .upstream_credentials
        .clone_from(&current.security.upstream_credentials);
    if let (Some(tls), Some(running)) = (&mut rest.security.tls, &current.security.tls) {
        tls.clone_from(running);
    }
    if changed.is_empty() && rest != *current {
        changed.push("a setting without a reload rule");
    }
    changed
}

/// The bytes of each file (`None`: unreadable), in order.
async fn snapshot(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    let mut contents = Vec::with_capacity(files.len());
    for file in files {
        contents.push(tokio::fs::read(file).await.ok());
    }
    contents
}

/// An error and its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    let received = match hangup {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        // No signal handler (or its stream ended): SIGHUP never comes.
        *hangup = None;
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Config {
        let file = ConfigFile::parse(yaml, std::path::Path::new("test.yaml")).expect("parses");
        Config::resolve(file, &HashMap::new(), &Overrides::default()).expect("valid")
    }

    #[test]
    fn only_settings_a_restart_needs_are_named() {
        let current = resolve("version: 1\n");
        let reloadable = resolve(
            "version: 1\nlog: { filter: debug }\nnetwork: { allow_cidrs: [10.0.0.0/8] }\nquotas: { per_org: { per_second: 1, burst: 1 } }\n",
        );
        assert!(needs_restart(&current, &reloadable).is_empty());
        let tls = |cert: &str| {
            resolve(&format!(
                "version: 1\ntls: {{ cert_file: {cert}, key_file: /k.pem }}\n"
            ))
        };
        assert!(needs_restart(&tls("/a.pem"), &tls("/b.pem")).is_empty());
        assert!(needs_restart(&current, &tls("/a.pem"))
            .contains(&"tls (turning the listener's TLS on or off)"));
        let fixed = resolve(
            "version: 1\nlisten: 127.0.0.1:9999\ndatabase_pool_size: 4\nnetwork: { allow_cidrs: [10.0.0.0/8] }\n",
        );
        assert_eq!(
            needs_restart(&current, &fixed),
            ["listen", "database_pool_size"]
        );
    }

    #[test]
    fn an_error_line_carries_its_causes() {
        let error = ReloadError::Invalid(ConfigError::Invalid {
            field: "quotas.per_org".to_owned(),
            message: "burst must be at least 1".to_owned(),
        });
        assert_eq!(
            chain(&error),
            "the new configuration is invalid: invalid quotas.per_org: burst must be at least 1"
        );
    }
}
