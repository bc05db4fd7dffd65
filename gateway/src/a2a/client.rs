//! The pooled HTTP client the gateway forwards with (hyper-util legacy
//! client, plain HTTP or HTTPS through rustls; an agent with TLS settings of
//! its own — a CA bundle, a client certificate — gets a pool of its own,
//! rebuilt when a reload replaces the credentials;
//! every pool connects through the SSRF guard's [`GuardedConnector`]),
//! and the per-upstream guards every call passes:
//! a concurrency bound (excess calls are refused at once with 503, never
//! queued) and a circuit breaker (after `breaker_failures` consecutive
//! transport failures the upstream is refused for `breaker_cooldown`, then
//! one probe call decides whether it closes again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use arc_swap::ArcSwap;

use super::credentials::UpstreamCredentials;
use super::UpstreamCredential;
use crate::ssrf::{AllowList, GuardedConnector};

/// One connection pool: plain HTTP, or HTTPS with one TLS configuration,
/// over TCP connections the SSRF guard admitted.
pub(crate) type HttpClient = Client<HttpsConnector<GuardedConnector>, Body>;

/// A cheap-to-clone pooled client with its per-upstream guards.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    /// Agents without TLS settings of their own: public web PKI roots.
    /// (Pools are behind `Arc`: a hyper client is a few hundred bytes of
    /// settings, and this client is cloned with the A2A state per call.)
    shared: Arc<HttpClient>,
    /// The same for gRPC upstreams: HTTP/2 only, so a plain `http://`
    /// endpoint is spoken to in cleartext HTTP/2 (prior knowledge).
    grpc_shared: Arc<HttpClient>,
    /// Agents with their own CA bundle or client certificate.
    per_agent: Arc<AgentPools>,
    guards: Arc<Mutex<HashMap<String, Arc<UpstreamGuard>>>>,
}

/// The pools of agents with TLS settings of their own, rebuilt when the
/// credential set they were built from is replaced (a reload).
#[derive(Debug)]
struct AgentPools {
    credentials: UpstreamCredentials,
    allow: AllowList,
    built: ArcSwap<BuiltPools>,
}

/// One credential set's pools.
#[derive(Debug)]
struct BuiltPools {
    from: Arc<HashMap<String, UpstreamCredential>>,
    http: HashMap<String, Arc<HttpClient>>,
    grpc: HashMap<String, Arc<HttpClient>>,
}

// === impl AgentPools ===

impl AgentPools {
    /// The pools of the credential set in force now.
    fn current(&self) -> Arc<BuiltPools> {
        let credentials = self.credentials.current();
        let built = self.built.load_full();
        if Arc::ptr_eq(&built.from, &credentials) {
            return built;
        }
        // Replaced since: build this set's pools once (two callers racing
        // here both build; either result is right).
        let fresh = Arc::new(BuiltPools::new(credentials, &self.allow));
        self.built.store(fresh.clone());
        fresh
    }
}

// === impl BuiltPools ===

impl BuiltPools {
    fn new(from: Arc<HashMap<String, UpstreamCredential>>, allow: &AllowList) -> Self {
        let pools = |http2_only: bool| -> HashMap<String, Arc<HttpClient>> {
            from.iter()
                .filter_map(|(agent, credential)| {
                    let config = credential.tls.as_ref()?;
                    let pool = pool(config.as_ref().clone(), allow.clone(), http2_only);
                    Some((agent.clone(), pool))
                })
                .collect()
        };
        let (http, grpc) = (pools(false), pools(true));
        Self { from, http, grpc }
    }
}

// === impl UpstreamClient ===

impl UpstreamClient {
    /// A client keeping idle connections for 90 s, trusting the public web
    /// PKI (Mozilla's roots) for `https://` upstreams, and connecting to
    /// public addresses only.
    pub fn new() -> Self {
        Self::with_credentials(UpstreamCredentials::default(), AllowList::none())
    }

    /// Like [`UpstreamClient::new`], and the agents whose `credentials`
    /// carry TLS settings of their own (CA bundle, client certificate) are
    /// reached with them, each in a pool of its own so a client certificate
    /// is never presented to another upstream; those pools follow the set
    /// when it is replaced. Every pool connects to public addresses and
    /// those `allow` lists (names resolved and checked at connect time, see
    /// `ssrf`).
    pub fn with_credentials(credentials: UpstreamCredentials, allow: AllowList) -> Self {
        let built = BuiltPools::new(credentials.current(), &allow);
        Self {
            shared: pool(
                crate::tls::public_roots_client_config(),
                allow.clone(),
                false,
            ),
            grpc_shared: pool(
                crate::tls::public_roots_client_config(),
                allow.clone(),
                true,
            ),
            per_agent: Arc::new(AgentPools {
                credentials,
                allow,
                built: ArcSwap::from_pointee(built),
            }),
            guards: Arc::default(),
        }
    }

    /// The pool calls to `agent` go through.
    pub(crate) fn pool_for(&self, agent: &str) -> Arc<HttpClient> {
        match self.per_agent.current().http.get(agent) {
            Some(pool) => pool.clone(),
            None => self.shared.clone(),
        }
    }

    /// The HTTP/2-only pool gRPC calls to `agent` go through.
    pub(crate) fn grpc_pool_for(&self, agent: &str) -> Arc<HttpClient> {
        match self.per_agent.current().grpc.get(agent) {
            Some(pool) => pool.clone(),
            None => self.grpc_shared.clone(),
        }
    }

    /// Admits one call to `agent`, or says why not.
    pub(crate) fn admit(
        &self,
        agent: &str,
        settings: &GuardSettings,
    ) -> Result<Admission, &'static str> {
        let guard = {
            let mut guards = self.guards.lock().map_err(|_| "upstream guard poisoned")?;
            guards
                .entry(agent.to_owned())
                .or_insert_with(|| Arc::new(UpstreamGuard::new(settings)))
                .clone()
        };
        guard.admit()
    }
}

/// Read by `/metrics` at each scrape.
impl crate::metrics::CircuitStates for UpstreamClient {
    fn circuit_states(&self) -> Vec<(String, bool)> {
        let Ok(guards) = self.guards.lock() else {
            return Vec::new();
        };
        guards
            .iter()
            .map(|(agent, guard)| {
                let open = guard
                    .breaker
                    .lock()
                    .map_or(true, |breaker| !matches!(*breaker, Breaker::Closed { .. }));
                (agent.clone(), open)
            })
            .collect()
    }
}

/// A pool over `tls` for `https://` URLs (ALPN h2, then http/1.1) and plain
/// TCP for `http://`, every TCP connection through the SSRF guard (which
/// sees the `https://` URI and its default port; TLS then runs over the
/// checked connection with the original host name for SNI). `http2_only`
/// (gRPC) offers only h2 and speaks HTTP/2 on plain TCP too.
fn pool(tls: rustls::ClientConfig, allow: AllowList, http2_only: bool) -> Arc<HttpClient> {
    let connector = GuardedConnector::new(allow);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if http2_only {
        builder.enable_http2().wrap_connector(connector)
    } else {
        builder
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector)
    };
    Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .http2_only(http2_only)
            .build(connector),
    )
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

/// The bounds of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuardSettings {
    pub(crate) concurrency: usize,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Concurrency bound and circuit breaker of one upstream.
#[derive(Debug)]
struct UpstreamGuard {
    semaphore: Arc<Semaphore>,
    breaker: Mutex<Breaker>,
    settings: GuardSettings,
}

// === impl UpstreamGuard ===

impl UpstreamGuard {
    fn new(settings: &GuardSettings) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            settings: *settings,
        }
    }

    fn admit(self: Arc<Self>) -> Result<Admission, &'static str> {
        let probe = {
            let mut breaker = self.breaker.lock().map_err(|_| "upstream guard poisoned")?;
            match *breaker {
                Breaker::Closed { .. } => false,
                Breaker::Open { until } if Instant::now() >= until => {
                    // One probe at a time decides whether the upstream is back.
                    *breaker = Breaker::HalfOpen;
                    true
                }
                Breaker::Open { .. } => return Err("circuit open"),
                Breaker::HalfOpen => return Err("circuit half-open, probe in flight"),
            }
        };
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if probe {
                    self.set(Breaker::Open {
                        until: Instant::now(),
                    });
                }
                return Err("upstream concurrency bound reached");
            }
        };
        Ok(Admission {
            guard: self,
            _permit: permit,
            outcome_recorded: false,
        })
    }

    fn set(&self, state: Breaker) {
        if let Ok(mut breaker) = self.breaker.lock() {
            *breaker = state;
        }
    }

    fn record(&self, success: bool) {
        let Ok(mut breaker) = self.breaker.lock() else {
            return;
        };
        let open = Breaker::Open {
            until: Instant::now() + self.settings.breaker_cooldown,
        };
        *breaker = match (*breaker, success) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.breaker_failures.max(1) {
                    tracing::warn!("upstream circuit opened after {failures} consecutive failures");
                    open
                } else {
                    Breaker::Closed { failures }
                }
            }
            (Breaker::HalfOpen, false) => open,
            (state @ Breaker::Open { .. }, false) => state,
        };
    }
}

/// One admitted call: holds a concurrency slot until dropped, and reports
/// its outcome to the breaker. Dropped unreported (the caller went away) it
/// counts as neither, except that an unfinished probe reopens the circuit.
#[derive(Debug)]
pub(crate) struct Admission {
    guard: Arc<UpstreamGuard>,
    _permit: OwnedSemaphorePermit,
    outcome_recorded: bool,
}

// === impl Admission ===

impl Admission {
    /// The upstream answered (even with an A2A error).
    pub(crate) fn succeeded(&mut self) {
        self.outcome_recorded = true;
        self.guard.record(true);
    }

    /// The upstream could not be reached, hung or answered garbage.
    pub(crate) fn failed(&mut self) {
        self.outcome_recorded = true;
        self.guard.record(false);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.outcome_recorded {
            if let Ok(mut breaker) = self.guard.breaker.lock() {
                if *breaker == Breaker::HalfOpen {
                    *breaker = Breaker::Open {
                        until: Instant::now(),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GuardSettings {
        GuardSettings {
            concurrency: 2,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_concurrency_bound_refuses_instead_of_queueing() {
        let client = UpstreamClient::new();
        let first = client.admit("a", &settings()).expect("first");
        let second = client.admit("a", &settings()).expect("second");
        assert!(client.admit("a", &settings()).is_err());
        assert!(
            client.admit("b", &settings()).is_ok(),
            "bounds are per upstream"
        );
        drop(first);
        assert!(client.admit("a", &settings()).is_ok());
        drop(second);
    }

    #[test]
    fn consecutive_failures_open_the_circuit_and_a_success_resets_the_count() {
        let client = UpstreamClient::new();
        for _ in 0..2 {
            client.admit("a", &settings()).expect("closed").failed();
        }
        client.admit("a", &settings()).expect("closed").succeeded();
        for _ in 0..2 {
            client.admit("a", &settings()).expect("closed").failed();
        }
        assert!(
            client.admit("a", &settings()).is_ok(),
            "two failures after a success"
        );
        for _ in 0..3 {
            if let Ok(mut admission) = client.admit("a", &settings()) {
                admission.failed();
            }
        }
        assert_eq!(client.admit("a", &settings()).err(), Some("circuit open"));
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let client = UpstreamClient::new();
        let quick = GuardSettings {
            breaker_cooldown: Duration::ZERO,
            ..settings()
        };
        for _ in 0..3 {
            client.admit("a", &quick).expect("closed").failed();
        }
        let mut probe = client.admit("a", &quick).expect("probe after cooldown");
        assert!(client.admit("a", &quick).is_err(), "one probe at a time");
        probe.succeeded();
        drop(probe);
        assert!(client.admit("a", &quick).is_ok());
        assert!(client.admit("a", &quick).is_ok(), "closed again");
    }
}
