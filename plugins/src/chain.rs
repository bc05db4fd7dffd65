//! [`Guardrails`]: the configured guardrails with where each applies, run in
//! order on one payload. A modification feeds the next guardrail; the first
//! refusal (or failure: guardrails fail closed) ends the chain.

use std::sync::Arc;

use serde_json::Value;

use crate::builtin::{MediaTypes, PartSize, Redact};
use crate::config::{CheckSpec, GuardrailsConfig};
use crate::guardrail::{Direction, GuardFacts, Guardrail, Verdict};
use crate::runtime::PluginRuntime;
use crate::stored::StoredGuardrail;
use crate::wasm_guardrail::WasmGuardrail;
use crate::PluginError;

/// Where a guardrail applies; an empty list matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    /// Directions (empty: both).
    pub directions: Vec<Direction>,
    /// Agent names.
    pub agents: Vec<String>,
    /// Skills; a rule with skills never matches a message naming none.
    pub skills: Vec<String>,
    /// Caller organisations; a rule with orgs never matches a caller without one.
    pub orgs: Vec<String>,
    /// Also needs policy to switch the rule on ([`GuardFacts::switched_on`]).
    pub by_policy: bool,
}

// === impl Selector ===

impl Selector {
    /// Whether a call with `facts` is selected.
    pub fn matches(&self, facts: &GuardFacts<'_>) -> bool {
        fn listed(list: &[String], value: Option<&str>) -> bool {
            list.is_empty() || value.is_some_and(|value| list.iter().any(|entry| entry == value))
        }
        (self.directions.is_empty() || self.directions.contains(&facts.direction))
            && listed(&self.agents, Some(facts.agent))
            && listed(&self.skills, facts.skill)
            && listed(&self.orgs, facts.org)
    }
}

struct Rule {
    selector: Selector,
    guardrail: Arc<dyn Guardrail>,
}

// === impl Rule ===

impl Rule {
    /// Whether the rule runs on a call with `facts`: its lists select the
    /// call and, for a `by_policy` rule, policy switched it on.
    fn applies(&self, facts: &GuardFacts<'_>) -> bool {
        self.selector.matches(facts)
            && (!self.selector.by_policy
                || facts
                    .switched_on
                    .iter()
                    .any(|name| name == self.guardrail.name()))
    }
}

/// The configured guardrails.
#[derive(Clone, Default)]
pub struct Guardrails {
    rules: Arc<Vec<Rule>>,
    /// The rules running stored plugins, which the serving process keeps
    /// at each plugin's newest version.
    stored: Arc<Vec<Arc<StoredGuardrail>>>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|rule| rule.guardrail.name()))
            .finish()
    }
}

/// What the chain did to a payload.
#[derive(Debug)]
pub enum Outcome {
    /// Every selected guardrail allowed it as it is.
    Unchanged,
    /// It passes as this new payload.
    Modified(Value),
    /// A guardrail refused it, or failed.
    Denied(Denial),
}

/// A refusal: which guardrail, its reason code and message, and the
/// guardrail's own failure when that was the cause.
#[derive(Debug)]
pub struct Denial {
    /// The guardrail's name.
    pub guardrail: String,
    /// A stable upper-case reason code.
    pub reason: String,
    /// A sentence the caller may read.
    pub message: String,
    /// The failure that made a guardrail refuse (fail closed), for logs.
    pub failure: Option<PluginError>,
}

// === impl Guardrails ===

impl Guardrails {
    /// Guardrails from explicit rules (tests, benches).
    pub fn new(rules: Vec<(Selector, Arc<dyn Guardrail>)>) -> Self {
        Self {
            rules: Arc::new(
                rules
                    .into_iter()
                    .map(|(selector, guardrail)| Rule {
                        selector,
                        guardrail,
                    })
                    .collect(),
            ),
            stored: Arc::default(),
        }
    }

    /// Builds the configured guardrails: built-ins directly, `wasm` files
    /// compiled by `runtime`.
    pub fn from_config(
        config: &GuardrailsConfig,
        runtime: Option<&PluginRuntime>,
    ) -> Result<Self, PluginError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut stored = Vec::new();
        for spec in &config.rules {
            let guardrail: Arc<dyn Guardrail> = match &spec.check {
                CheckSpec::PartSize { max_bytes } => {
                    Arc::new(PartSize::new(spec.name.clone(), *max_bytes))
                }
                CheckSpec::MediaTypes { allow } => {
                    Arc::new(MediaTypes::new(spec.name.clone(), allow.clone()))
                }
                CheckSpec::Redact { detect, action } => {
                    Arc::new(Redact::new(spec.name.clone(), detect, *action)?)
                }
                CheckSpec::Wasm { file } => {
                    let runtime = runtime.ok_or_else(|| PluginError::Config {
                        detail: format!("guardrail {} needs the plugin runtime", spec.name),
                    })?;
                    let bytes = std::fs::read(file).map_err(|error| PluginError::Config {
                        detail: format!(
                            "guardrail {}: reading {} failed: {error}",
                            spec.name,
                            file.display()
                        ),
                    })?;
                    Arc::new(WasmGuardrail::load(runtime, &spec.name, &bytes)?)
                }
                CheckSpec::Plugin { name } => {
                    let guardrail = Arc::new(StoredGuardrail::new(spec.name.clone(), name.clone()));
                    stored.push(guardrail.clone());
                    guardrail
                }
            };
            rules.push((
                Selector {
                    directions: spec.directions.clone(),
                    agents: spec.agents.clone(),
                    skills: spec.skills.clone(),
                    orgs: spec.orgs.clone(),
                    by_policy: spec.by_policy,
                },
                guardrail,
            ));
        }
        Ok(Self {
            stored: Arc::new(stored),
            ..Self::new(rules)
        })
    }

    /// The rules running stored plugins (`check: {plugin: …}`), for the
    /// serving process to install each plugin's newest version in.
    pub fn stored_plugins(&self) -> &[Arc<StoredGuardrail>] {
        &self.stored
    }

    /// Whether no guardrail is configured at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any guardrail applies to a call with `facts`.
    pub fn selects(&self, facts: &GuardFacts<'_>) -> bool {
        self.rules.iter().any(|rule| rule.applies(facts))
    }

    /// The `by_policy` rules whose lists select a call with `facts`: the
    /// ones the gateway asks policy about (`apply_guardrail`) before it
    /// runs the chain. Empty, at no cost, when no rule is left to policy.
    pub fn left_to_policy<'a>(&'a self, facts: &GuardFacts<'_>) -> Vec<&'a str> {
        self.rules
            .iter()
            .filter(|rule| rule.selector.by_policy && rule.selector.matches(facts))
            .map(|rule| rule.guardrail.name())
            .collect()
    }

    /// The names of the guardrails selected for `facts`, in order.
    pub fn selected(&self, facts: &GuardFacts<'_>) -> Vec<String> {
        self.rules
            .iter()
            .filter(|rule| rule.applies(facts))
            .map(|rule| rule.guardrail.name().to_owned())
            .collect()
    }

    /// Runs every selected guardrail on `payload`, in order; a sandboxed
    /// plugin yields to the executor while it runs.
    pub async fn check(&self, facts: &GuardFacts<'_>, payload: &Value) -> Outcome {
        let mut current: Option<Value> = None;
        for rule in self.rules.iter() {
            if !rule.applies(facts) {
                continue;
            }
            let seen = current.as_ref().unwrap_or(payload);
            match rule.guardrail.check_async(facts, seen).await {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Modify(changed)) => current = Some(changed),
                Ok(Verdict::Deny { reason, message }) => {
                    return Outcome::Denied(Denial {
                        guardrail: rule.guardrail.name().to_owned(),
                        reason,
                        message,
                        failure: None,
                    })
                }
                Err(failure) => {
                    return Outcome::Denied(Denial {
                        guardrail: rule.guardrail.name().to_owned(),
                        reason: format!("GUARDRAIL_{}", failure.code()),
                        message: format!("guardrail {} failed", rule.guardrail.name()),
                        failure: Some(failure),
                    })
                }
            }
        }
        match current {
            Some(changed) => Outcome::Modified(changed),
            None => Outcome::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardrailsConfig;
    use crate::runtime::SandboxLimits;

    #[test]
    fn the_documented_section_parses_and_builds() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"{
            "rules": [
                {"name": "no-cards", "check": {"redact": {"detect": ["card"], "action": "deny"}},
                 "directions": ["request"], "orgs": ["acme.example"]},
                {"name": "pii", "check": {"redact": {"detect": ["email", "secret"]}}},
                {"name": "size", "check": {"part_size": {"max_bytes": 65536}}},
                {"name": "mime", "check": {"media_types": {"allow": ["text/*"]}}},
                {"name": "strict", "check": {"redact": {"detect": ["email"], "action": "deny"}},
                 "by_policy": true, "directions": ["response"]}
            ]
        }"#;
        let config: GuardrailsConfig = serde_json::from_str(text)?;
        assert_eq!(config.rules.len(), 5);
        assert_eq!(config.sandbox, SandboxLimits::default());
        let guardrails = Guardrails::from_config(&config, None)?;
        let facts = GuardFacts {
            direction: Direction::Request,
            agent: "echo",
            skill: None,
            org: Some("acme.example"),
            subject: "alice",
            switched_on: &[],
        };
        assert_eq!(
            guardrails.selected(&facts),
            ["no-cards", "pii", "size", "mime"]
        );
        assert!(guardrails.left_to_policy(&facts).is_empty());
        // A rule left to policy runs only where its lists select the call
        // and policy switched it on.
        let response = GuardFacts {
            direction: Direction::Response,
            ..facts
        };
        assert_eq!(guardrails.left_to_policy(&response), ["strict"]);
        assert_eq!(guardrails.selected(&response), ["pii", "size", "mime"]);
        let switched = ["strict".to_owned()];
        let on = GuardFacts {
            switched_on: &switched,
            ..response
        };
        assert_eq!(guardrails.selected(&on), ["pii", "size", "mime", "strict"]);
        let request_on = GuardFacts {
            switched_on: &switched,
            ..facts
        };
        assert!(!guardrails
            .selected(&request_on)
            .contains(&"strict".to_owned()));
        let other = GuardFacts {
            org: Some("other.example"),
            ..facts
        };
        assert_eq!(guardrails.selected(&other), ["pii", "size", "mime"]);
        let unknown = serde_json::from_str::<GuardrailsConfig>(r#"{"rules": [], "extra": 1}"#);
        assert!(unknown.is_err(), "unknown keys are refused");
        Ok(())
    }
}
