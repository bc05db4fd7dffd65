//! Quotas: token buckets for requests per principal, per organisation and
//! per agent, and fixed-window budgets for the message tokens and tool calls
//! callers report, all in memory per replica.
//!
//! Several replicas: each replica enforces `limit / replicas` (the
//! `replicas` field of [`QuotaConfig`]). With a load balancer spreading
//! requests evenly this keeps the total under the limit without any shared
//! state; the price is that a caller pinned to one replica gets only its
//! share. A PostgreSQL counter table would be exact but adds a database
//! round trip before every upstream call, so it is not the default.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use convergio_schemas::Principal;
use serde::{Deserialize, Serialize};

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (the refill rate).
    pub per_second: f64,
    /// Bucket size: how many requests may come at once.
    pub burst: f64,
}

/// Budgets per principal over a fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Message tokens a principal may report per window.
    pub message_tokens: u64,
    /// Tool calls a principal may report per window.
    pub tool_calls: u64,
    /// The window length in seconds.
    pub window_seconds: u64,
}

/// Quota configuration. Absent limits are not enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests per principal subject.
    #[serde(default)]
    pub per_principal: Option<RateLimit>,
    /// Requests per caller organisation.
    #[serde(default)]
    pub per_org: Option<RateLimit>,
    /// Requests per target agent.
    #[serde(default)]
    pub per_agent: Option<RateLimit>,
    /// Reported usage budgets per principal.
    #[serde(default)]
    pub budget: Option<Budget>,
    /// How many replicas share the limits (default 1); each enforces
    /// `limit / replicas`.
    #[serde(default = "one")]
    pub replicas: u32,
}

fn one() -> u32 {
    1
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            per_principal: None,
            per_org: None,
            per_agent: None,
            budget: None,
            replicas: 1,
        }
    }
}

/// A quota was hit; retry after the duration (the `Retry-After` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded; retry after {} s", self.seconds())
    }
}

impl std::error::Error for RetryAfter {}

// === impl RetryAfter ===

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1 (for the header).
    pub fn seconds(&self) -> u64 {
        let whole = self.0.as_secs();
        if self.0.subsec_nanos() > 0 || whole == 0 {
            whole + 1
        } else {
            whole
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    window_start: Instant,
    message_tokens: u64,
    tool_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Principal(String),
    Org(String),
    Agent(String),
}

#[derive(Debug, Default)]
struct State {
    config: QuotaConfig,
    buckets: HashMap<Key, Bucket>,
    usage: HashMap<String, Usage>,
}

/// The per-replica quota enforcer. Its limits can be replaced while it
/// runs ([`Quotas::reconfigure`], a configuration reload).
#[derive(Debug)]
pub struct Quotas {
    state: Mutex<State>,
}

/// Above this many tracked keys, full (idle) buckets are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

// === impl Quotas ===

impl Quotas {
    /// An enforcer for `config`.
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
        }
    }

    /// Enforces `config` from the next check on. What callers have used so
    /// far is kept: a bucket holds at most the new burst when it is next
    /// refilled, and reported usage still counts against the new budget.
    pub fn reconfigure(&self, config: QuotaConfig) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        state.config = config;
    }

    /// The limits enforced now.
    pub fn config(&self) -> QuotaConfig {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .config
            .clone()
    }

    /// Takes one request token from each applicable bucket, or none if any
    /// is empty; fails also while the principal's budget is spent.
    pub fn check(&self, principal: &Principal, agent: Option<&str>) -> Result<(), RetryAfter> {
        self.check_at(principal, agent, Instant::now())
    }

    /// [`Quotas::check`] at a given instant (for tests).
    pub fn check_at(
        &self,
        principal: &Principal,
        agent: Option<&str>,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let state = &mut *guard;
        let config = &state.config;
        let mut limited: Vec<(Key, RateLimit)> = Vec::with_capacity(3);
        if let Some(limit) = config.per_principal {
            limited.push((Key::Principal(principal.subject.clone()), limit));
        }
        if let (Some(limit), Some(org)) = (config.per_org, &principal.org) {
            limited.push((Key::Org(org.clone()), limit));
        }
        if let (Some(limit), Some(agent)) = (config.per_agent, agent) {
            limited.push((Key::Agent(agent.to_owned()), limit));
        }
        let replicas = f64::from(config.replicas.max(1));

        if let Some(budget) = config.budget {
            if let Some(usage) = state.usage.get(&principal.subject) {
                let window = Duration::from_secs(budget.window_seconds.max(1));
                let elapsed = now.saturating_duration_since(usage.window_start);
                let spent = usage.message_tokens
                    >= budget.message_tokens / u64::from(config.replicas.max(1))
                    || usage.tool_calls >= budget.tool_calls / u64::from(config.replicas.max(1));
                if elapsed < window && spent {
                    return Err(RetryAfter(window - elapsed));
                }
            }
        }

        if state.buckets.len() > MAX_TRACKED_KEYS {
            forget_idle(&mut state.buckets, &state.config, now);
        }
        let mut wait = Duration::ZERO;
        let mut refilled = Vec::with_capacity(limited.len());
        for (key, limit) in &limited {
            let rate = limit.per_second / replicas;
            let burst = (limit.burst / replicas).max(1.0);
            let bucket = state.buckets.get(key).copied().unwrap_or(Bucket {
                tokens: burst,
                updated: now,
            });
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            let tokens = (bucket.tokens + elapsed * rate).min(burst);
            if tokens < 1.0 {
                let needed = if rate > 0.0 {
                    Duration::from_secs_f64(((1.0 - tokens) / rate).min(86_400.0))
                } else {
                    Duration::from_secs(86_400)
                };
                wait = wait.max(needed);
            }
            refilled.push((key.clone(), tokens));
        }
        if wait > Duration::ZERO {
            return Err(RetryAfter(wait));
        }
        for (key, tokens) in refilled {
            state.buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    updated: now,
                },
            );
        }
        Ok(())
    }

    /// Adds usage a response reported (message tokens, tool calls).
    pub fn report_usage(&self, principal: &Principal, message_tokens: u64, tool_calls: u64) {
        self.report_usage_at(principal, message_tokens, tool_calls, Instant::now());
    }

    /// [`Quotas::report_usage`] at a given instant (for tests).
    pub fn report_usage_at(
        &self,
        principal: &Principal,
        message_tokens: u64,
        tool_calls: u64,
        now: Instant,
    ) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(budget) = state.config.budget else {
            return;
        };
        let window = Duration::from_secs(budget.window_seconds.max(1));
        let usage = state
            .usage
            .entry(principal.subject.clone())
            .or_insert(Usage {
                window_start: now,
                message_tokens: 0,
                tool_calls: 0,
            });
        if now.saturating_duration_since(usage.window_start) >= window {
            *usage = Usage {
                window_start: now,
                message_tokens: 0,
                tool_calls: 0,
            };
        }
        usage.message_tokens = usage.message_tokens.saturating_add(message_tokens);
        usage.tool_calls = usage.tool_calls.saturating_add(tool_calls);
    }
}

fn forget_idle(buckets: &mut HashMap<Key, Bucket>, config: &QuotaConfig, now: Instant) {
    let longest_refill = [config.per_principal, config.per_org, config.per_agent]
        .into_iter()
        .flatten()
        .map(|limit| {
            if limit.per_second > 0.0 {
                limit.burst / limit.per_second
            } else {
                f64::MAX
            }
        })
        .fold(0.0_f64, f64::max);
    buckets.retain(|_, bucket| {
        now.saturating_duration_since(bucket.updated).as_secs_f64() < longest_refill
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use convergio_schemas::AuthMethod;

    fn alice() -> Principal {
        Principal {
            subject: "alice".to_owned(),
            org: Some("acme.example".to_owned()),
            scopes: Vec::new(),
            method: AuthMethod::Jwt,
        }
    }

    fn limited(per_second: f64, burst: f64) -> QuotaConfig {
        QuotaConfig {
            per_principal: Some(RateLimit { per_second, burst }),
            ..QuotaConfig::default()
        }
    }

    #[test]
    fn bucket_allows_burst_then_asks_to_retry() {
        let quotas = Quotas::new(limited(1.0, 2.0));
        let now = Instant::now();
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        let retry = quotas
            .check_at(&alice(), None, now)
            .expect_err("bucket is empty");
        assert_eq!(retry.seconds(), 1);
        assert!(quotas
            .check_at(&alice(), None, now + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn reconfigured_limits_apply_to_the_next_check() {
        let quotas = Quotas::new(QuotaConfig::default());
        let now = Instant::now();
        for _ in 0..5 {
            assert!(quotas.check_at(&alice(), None, now).is_ok(), "no limit yet");
        }
        quotas.reconfigure(limited(0.0, 1.0));
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        assert!(quotas.check_at(&alice(), None, now).is_err(), "burst of 1");
        quotas.reconfigure(QuotaConfig::default());
        assert!(quotas.check_at(&alice(), None, now).is_ok(), "lifted");
        assert_eq!(quotas.config(), QuotaConfig::default());
    }

    #[test]
    fn org_bucket_is_shared_by_its_principals() {
        let quotas = Quotas::new(QuotaConfig {
            per_org: Some(RateLimit {
                per_second: 0.5,
                burst: 1.0,
            }),
            ..QuotaConfig::default()
        });
        let now = Instant::now();
        let mut bob = alice();
        bob.subject = "bob".to_owned();
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        let retry = quotas
            .check_at(&bob, None, now)
            .expect_err("org bucket is empty");
        assert_eq!(retry.seconds(), 2);
    }

    #[test]
    fn empty_agent_bucket_does_not_drain_principal_bucket() {
        let quotas = Quotas::new(QuotaConfig {
            per_principal: Some(RateLimit {
                per_second: 0.0,
                burst: 2.0,
            }),
            per_agent: Some(RateLimit {
                per_second: 0.0,
                burst: 1.0,
            }),
            ..QuotaConfig::default()
        });
        let now = Instant::now();
        assert!(quotas.check_at(&alice(), Some("a"), now).is_ok());
        assert!(quotas.check_at(&alice(), Some("a"), now).is_err());
        assert!(quotas.check_at(&alice(), Some("b"), now).is_ok());
    }

    #[test]
    fn replicas_share_the_limit() {
        let mut config = limited(0.0, 4.0);
        config.replicas = 2;
        let quotas = Quotas::new(config);
        let now = Instant::now();
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        assert!(quotas.check_at(&alice(), None, now).is_err());
    }

    #[test]
    fn spent_budget_blocks_until_the_window_ends() {
        let quotas = Quotas::new(QuotaConfig {
            budget: Some(Budget {
                message_tokens: 100,
                tool_calls: 10,
                window_seconds: 60,
            }),
            ..QuotaConfig::default()
        });
        let now = Instant::now();
        assert!(quotas.check_at(&alice(), None, now).is_ok());
        quotas.report_usage_at(&alice(), 150, 0, now);
        let retry = quotas
            .check_at(&alice(), None, now + Duration::from_secs(10))
            .expect_err("budget is spent");
        assert_eq!(retry.seconds(), 50);
        assert!(quotas
            .check_at(&alice(), None, now + Duration::from_secs(60))
            .is_ok());
    }
}
