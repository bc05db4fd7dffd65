//! The `upstream:` section of the configuration (issue 17): how long a call
//! to an upstream agent may take. A model call may take minutes and a
//! health probe should not, so the default bound can be replaced per agent;
//! a graph node's `timeout_seconds` and a model agent's declared
//! `timeout_seconds` replace it too, and nothing exceeds the maximum.
//!
//! ```yaml
//! upstream:
//!   timeout_seconds: 30            # agents without their own bound
//!   max_timeout_seconds: 900       # no agent, model agent or node exceeds it
//!   agent_timeouts:
//!     report_generator: 300
//!   resumable_streams: true        # record streams for Last-Event-ID
//! ```
//!
//! `resumable_streams` also lives here: recording a stream (issue 24, the
//! gateway's `resume.rs`) costs one database write per streamed event,
//! which a deployment that never resumes may rather not pay.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;
use crate::env;

/// Longest bound accepted anywhere: a day.
const CEILING_SECONDS: u64 = 86_400;

/// The `upstream:` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    /// Seconds an agent without its own bound may take to answer (the
    /// response head, or a whole unary answer). Default 30.
    /// `CONVERGIO_UPSTREAM_TIMEOUT_SECONDS`.
    pub timeout_seconds: u64,
    /// No agent's, model agent's or graph node's bound exceeds this.
    /// Default 900. `CONVERGIO_UPSTREAM_MAX_TIMEOUT_SECONDS`.
    pub max_timeout_seconds: u64,
    /// Agents' own bounds in seconds, by agent name. Default none.
    pub agent_timeouts: BTreeMap<String, u64>,
    /// Record each `SendStreamingMessage` stream (one database write per
    /// event) so a caller can resume it on any replica with
    /// `Last-Event-ID`. Default true.
    pub resumable_streams: bool,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        Self {
            timeout_seconds: 30,
            max_timeout_seconds: 900,
            agent_timeouts: BTreeMap::new(),
            resumable_streams: true,
        }
    }
}

/// The `push:` section (issue 24): notifications the agents post to the
/// gateway's webhook, relayed to each caller's endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Keep callers' push configs at the gateway and relay the agents'
    /// notifications to them (signed, retried, dead-lettered). Default
    /// true; false passes push-config calls to the agents unchanged.
    pub enabled: bool,
    /// The gateway's base URL as the agents reach it; the webhook is
    /// `{webhook_base_url}/push/{id}`. Default: the listen address.
    pub webhook_base_url: Option<String>,
    /// Attempts before a notification is dead-lettered, 1 to 100. Default 6.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each later one doubles it.
    /// Default 1000.
    pub first_retry_ms: u64,
    /// Milliseconds one delivery attempt may take. Default 10000.
    pub attempt_timeout_ms: u64,
    /// Seconds between looks for deliveries a stopped replica left
    /// overdue, which this replica then takes over. Default 30.
    pub sweep_interval_seconds: u64,
}

impl Default for PushSection {
    fn default() -> Self {
        Self {
            enabled: true,
            webhook_base_url: None,
            max_attempts: 6,
            first_retry_ms: 1000,
            attempt_timeout_ms: 10_000,
            sweep_interval_seconds: 30,
        }
    }
}

/// Checks the `push:` section; the message names the field.
pub fn validate_push(section: &PushSection) -> Result<(), ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: format!("push.{field}"),
        message,
    };
    if !(1..=100).contains(&section.max_attempts) {
        return Err(invalid(
            "max_attempts",
            "must be between 1 and 100".to_owned(),
        ));
    }
    if !(1..=3_600_000).contains(&section.first_retry_ms) {
        return Err(invalid(
            "first_retry_ms",
            "must be between 1 and 3600000".to_owned(),
        ));
    }
    if !(1..=600_000).contains(&section.attempt_timeout_ms) {
        return Err(invalid(
            "attempt_timeout_ms",
            "must be between 1 and 600000".to_owned(),
        ));
    }
    if !(1..=86_400).contains(&section.sweep_interval_seconds) {
        return Err(invalid(
            "sweep_interval_seconds",
            "must be between 1 and 86400".to_owned(),
        ));
    }
    if let Some(base) = &section.webhook_base_url {
        let scheme = base.split("://").next().unwrap_or_default();
        if !matches!(scheme, "http" | "https") || !base.contains("://") {
            return Err(invalid(
                "webhook_base_url",
                format!("{base:?} is not an http(s) URL"),
            ));
        }
    }
    Ok(())
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// The default bound.
    pub timeout: Duration,
    /// The maximum bound.
    pub max_timeout: Duration,
    /// Agents' own bounds.
    pub agent_timeouts: HashMap<String, Duration>,
    /// Whether streams are recorded for resumption.
    pub resumable_streams: bool,
}

/// Applies the `CONVERGIO_UPSTREAM_*` overrides to `section`.
pub fn apply_environment(
    section: &mut UpstreamSection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let seconds = |key: &str| -> Result<Option<u64>, ConfigError> {
        match environment.get(key).filter(|value| !value.is_empty()) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| ConfigError::Invalid {
                field: key.to_owned(),
                message: format!("expected seconds, found {value:?}"),
            }),
        }
    };
    if let Some(value) = seconds(env::UPSTREAM_TIMEOUT)? {
        section.timeout_seconds = value;
    }
    if let Some(value) = seconds(env::UPSTREAM_MAX_TIMEOUT)? {
        section.max_timeout_seconds = value;
    }
    Ok(())
}

/// Validates the section; `model_max_timeout` is `models.max_timeout_seconds`,
/// which must fit under the maximum (a model agent allowed longer would be
/// cut by the gateway before its own timeout could answer).
pub fn validate(
    section: UpstreamSection,
    model_max_timeout: Duration,
) -> Result<UpstreamSettings, ConfigError> {
    let invalid = |field: String, message: String| ConfigError::Invalid { field, message };
    if section.max_timeout_seconds == 0 || section.max_timeout_seconds > CEILING_SECONDS {
        return Err(invalid(
            "upstream.max_timeout_seconds".to_owned(),
            format!("must be between 1 and {CEILING_SECONDS}"),
        ));
    }
    let within = |field: String, seconds: u64| {
        if seconds == 0 || seconds > section.max_timeout_seconds {
            Err(invalid(
                field,
                format!(
                    "must be between 1 and upstream.max_timeout_seconds ({})",
                    section.max_timeout_seconds
                ),
            ))
        } else {
            Ok(Duration::from_secs(seconds))
        }
    };
    let timeout = within(
        "upstream.timeout_seconds".to_owned(),
        section.timeout_seconds,
    )?;
    let agent_timeouts = section
        .agent_timeouts
        .iter()
        .map(|(agent, seconds)| {
            let field = format!("upstream.agent_timeouts.{agent}");
            Ok((agent.clone(), within(field, *seconds)?))
        })
        .collect::<Result<HashMap<_, _>, ConfigError>>()?;
    if model_max_timeout.as_secs() > section.max_timeout_seconds {
        return Err(invalid(
            "models.max_timeout_seconds".to_owned(),
            format!(
                "{} exceeds upstream.max_timeout_seconds ({}): raise that too",
                model_max_timeout.as_secs(),
                section.max_timeout_seconds
            ),
        ));
    }
    Ok(UpstreamSettings {
        timeout,
        max_timeout: Duration::from_secs(section.max_timeout_seconds),
        agent_timeouts,
        resumable_streams: section.resumable_streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[test]
    fn the_defaults_validate() {
        let settings = validate(UpstreamSection::default(), TEN_MINUTES).expect("valid");
        assert_eq!(settings.timeout, Duration::from_secs(30));
        assert_eq!(settings.max_timeout, Duration::from_secs(900));
    }

    #[test]
    fn an_agent_timeout_over_the_maximum_is_refused_by_name() {
        let section = UpstreamSection {
            agent_timeouts: BTreeMap::from([("slow".to_owned(), 901)]),
            ..UpstreamSection::default()
        };
        let error = validate(section, TEN_MINUTES).expect_err("over the maximum");
        assert!(
            error.to_string().contains("upstream.agent_timeouts.slow"),
            "{error}"
        );
    }

    #[test]
    fn a_model_maximum_over_the_upstream_maximum_is_refused() {
        let error = validate(UpstreamSection::default(), Duration::from_secs(1200))
            .expect_err("models may not outlive the gateway's bound");
        assert!(
            error.to_string().contains("models.max_timeout_seconds"),
            "{error}"
        );
    }

    #[test]
    fn the_environment_overrides_both_bounds() {
        let mut section = UpstreamSection::default();
        let environment = HashMap::from([
            (env::UPSTREAM_TIMEOUT.to_owned(), "5".to_owned()),
            (env::UPSTREAM_MAX_TIMEOUT.to_owned(), "60".to_owned()),
        ]);
        apply_environment(&mut section, &environment).expect("numbers");
        assert_eq!(
            (section.timeout_seconds, section.max_timeout_seconds),
            (5, 60)
        );
        let bad = HashMap::from([(env::UPSTREAM_TIMEOUT.to_owned(), "soon".to_owned())]);
        assert!(apply_environment(&mut section, &bad).is_err());
    }
}
