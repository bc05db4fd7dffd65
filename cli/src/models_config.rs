//! The `models:` section of the configuration (issue 17): where model agent
//! declarations are loaded from, the price table that turns provider usage
//! into cost, per-organisation daily budgets, and the longest any model
//! agent may take; plus the secrets key from `CONVERGIO_SECRETS_KEY`.
//!
//! ```yaml
//! models:
//!   agents_dir: ./agents            # every *.yaml, at start and on change
//!   max_timeout_seconds: 600
//!   max_agents: 32                  # loopback slots, bound at start
//!   prices:
//!     - { provider: openai, model: gpt-4o-mini, input_per_million: 0.15, output_per_million: 0.60 }
//!   budgets:
//!     default: { daily_tokens: 2000000 }
//!     orgs:
//!       acme.example: { daily_tokens: 500000, daily_cost: 5.0 }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use convergio_auth::SecretValue;
use convergio_schemas::ProviderKind;
use serde::{Deserialize, Serialize};

use crate::config_error::{parse_env, ConfigError};
use crate::env;

/// The `models:` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSection {
    /// Directory whose `*.yaml` model agent declarations `serve` loads at
    /// start and reloads on change (an invalid file is logged and skipped).
    /// Default: none. `CONVERGIO_MODEL_AGENTS_DIR`.
    pub agents_dir: Option<PathBuf>,
    /// Seconds between looks at `agents_dir` for changes. Default 2.
    pub watch_interval_seconds: u64,
    /// The most any model agent's `timeout_seconds` may be; longer ones are
    /// cut to it. Default 600. `CONVERGIO_MODEL_MAX_TIMEOUT_SECONDS`.
    pub max_timeout_seconds: u64,
    /// Messages of a context sent back to the model with a follow-up.
    /// Default 100.
    pub max_history_messages: u32,
    /// Model agents this replica serves at once: each gets one of this many
    /// loopback listeners bound at start (the SSRF allow-list admits
    /// exactly those). Default 32.
    pub max_agents: usize,
    /// Prices per provider and model. Default: none (cost 0).
    pub prices: Vec<PriceEntry>,
    /// Daily budgets per organisation. Default: none.
    pub budgets: BudgetsSection,
}

/// One row of the price table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// `openai` or `anthropic`.
    #[schemars(with = "ProviderName")]
    pub provider: ProviderKind,
    /// The model name, as declarations write it.
    pub model: String,
    /// Price of a million input tokens.
    pub input_per_million: f64,
    /// Price of a million output tokens.
    pub output_per_million: f64,
}

/// How the config schema spells a [`ProviderKind`] (the models crate does
/// not depend on schemars).
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ProviderName {
    /// Any OpenAI-compatible chat completions API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// Daily budgets: a default and per-organisation ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsSection {
    /// For organisations not listed in `orgs`.
    pub default: Option<DailyBudget>,
    /// By organisation domain.
    pub orgs: BTreeMap<String, DailyBudget>,
}

/// One organisation's daily limits (UTC days); absent limits do not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DailyBudget {
    /// Input plus output tokens per day.
    pub daily_tokens: Option<u64>,
    /// Cost per day, in the price table's unit.
    pub daily_cost: Option<f64>,
}

impl Default for ModelsSection {
    fn default() -> Self {
        Self {
            agents_dir: None,
            watch_interval_seconds: 2,
            max_timeout_seconds: 600,
            max_history_messages: 100,
            max_agents: 32,
            prices: Vec::new(),
            budgets: BudgetsSection::default(),
        }
    }
}

/// A price in millionths of the unit per token (so a million tokens at
/// 0.15 is 150,000 millionths): integer arithmetic in the ledger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Input price per million tokens.
    pub input_per_million: f64,
    /// Output price per million tokens.
    pub output_per_million: f64,
}

/// Prices by provider and model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: HashMap<(ProviderKind, String), Price>,
}

// === impl PriceTable ===

impl PriceTable {
    /// The price of `model` at `provider`, if listed.
    pub fn price(&self, provider: ProviderKind, model: &str) -> Option<Price> {
        self.prices.get(&(provider, model.to_owned())).copied()
    }

    /// The cost of a call, in millionths of the unit (0 when unlisted).
    pub fn cost_micros(
        &self,
        provider: ProviderKind,
        model: &str,
        tokens_in: u64,
        tokens_out: u64,
    ) -> u64 {
        let Some(price) = self.price(provider, model) else {
            return 0;
        };
        // price per million tokens × tokens ÷ 1e6 × 1e6 micros = price × tokens.
        let micros = price.input_per_million * tokens_in as f64
            + price.output_per_million * tokens_out as f64;
        micros.round().clamp(0.0, u64::MAX as f64) as u64
    }
}

/// The validated `models:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Declarations directory, if any.
    pub agents_dir: Option<PathBuf>,
    /// How often it is looked at.
    pub watch_interval: std::time::Duration,
    /// The longest any model agent may take.
    pub max_timeout: std::time::Duration,
    /// History sent back per follow-up.
    pub max_history_messages: u32,
    /// Loopback slots for model agents.
    pub max_agents: usize,
    /// The price table.
    pub prices: PriceTable,
    /// Daily budgets.
    pub budgets: BudgetsSection,
    /// `CONVERGIO_SECRETS_KEY` (base64 of 32 bytes); `None`: the data
    /// dir's `secrets.key`, created on first start.
    pub secrets_key: Option<SecretValue>,
}

// === impl ModelSettings ===

impl ModelSettings {
    /// `org`'s daily budget: its own, else the default.
    pub fn budget_of(&self, org: &str) -> Option<DailyBudget> {
        self.budgets.orgs.get(org).copied().or(self.budgets.default)
    }
}

/// Applies the `CONVERGIO_MODEL_*` overrides to `section`.
pub fn apply_environment(
    section: &mut ModelsSection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let get = |key: &str| environment.get(key).filter(|value| !value.is_empty());
    if let Some(value) = get(env::MODEL_AGENTS_DIR) {
        section.agents_dir = Some(PathBuf::from(value));
    }
    if let Some(value) = get(env::MODEL_MAX_TIMEOUT) {
        section.max_timeout_seconds = parse_env(env::MODEL_MAX_TIMEOUT, value, "seconds")?;
    }
    Ok(())
}

/// Validates the section; the secrets key comes from `environment`.
pub fn validate(
    section: ModelsSection,
    environment: &HashMap<String, String>,
) -> Result<ModelSettings, ConfigError> {
    if section.max_timeout_seconds == 0 || section.max_timeout_seconds > 86_400 {
        return Err(invalid(
            "models.max_timeout_seconds",
            "must be between 1 and 86400".to_owned(),
        ));
    }
    if section.watch_interval_seconds == 0 || section.watch_interval_seconds > 3600 {
        return Err(invalid(
            "models.watch_interval_seconds",
            "must be between 1 and 3600".to_owned(),
        ));
    }
    if section.max_agents > 1024 {
        return Err(invalid(
            "models.max_agents",
            "must be at most 1024".to_owned(),
        ));
    }
    if section.max_history_messages == 0 {
        return Err(invalid(
            "models.max_history_messages",
            "must be at least 1".to_owned(),
        ));
    }
    let mut prices = HashMap::new();
    for (index, entry) in section.prices.iter().enumerate() {
        let field = format!("models.prices[{index}]");
        let valid = entry.input_per_million.is_finite()
            && entry.output_per_million.is_finite()
            && entry.input_per_million >= 0.0
            && entry.output_per_million >= 0.0;
        if !valid || entry.model.is_empty() {
            return Err(invalid(
                &field,
                "needs a model and prices of at least 0".to_owned(),
            ));
        }
        let price = Price {
            input_per_million: entry.input_per_million,
            output_per_million: entry.output_per_million,
        };
        if prices
            .insert((entry.provider, entry.model.clone()), price)
            .is_some()
        {
            return Err(invalid(
                &field,
                format!("{} {} is priced twice", entry.provider, entry.model),
            ));
        }
    }
    let budgets = section
        .budgets
        .default
        .iter()
        .map(|budget| ("models.budgets.default".to_owned(), budget));
    let orgs = section
        .budgets
        .orgs
        .iter()
        .map(|(org, budget)| (format!("models.budgets.orgs.{org}"), budget));
    for (field, budget) in budgets.chain(orgs) {
        let valid = budget.daily_tokens.is_none_or(|tokens| tokens > 0)
            && budget
                .daily_cost
                .is_none_or(|cost| cost.is_finite() && cost > 0.0);
        if !valid {
            return Err(invalid(
                &field,
                "daily_tokens and daily_cost must be above 0".to_owned(),
            ));
        }
    }
    for org in section.budgets.orgs.keys() {
        convergio_schemas::ids::check_org(org)
            .map_err(|error| invalid("models.budgets.orgs", error.to_string()))?;
    }
    let secrets_key = match environment
        .get(env::SECRETS_KEY)
        .filter(|value| !value.is_empty())
    {
        Some(text) => {
            // Checked now, so a bad key stops the start with the key's name
            // (never its value) instead of failing the first secret.
            convergio_auth::SecretsKey::from_base64(text)
                .map_err(|error| invalid(env::SECRETS_KEY, error.to_string()))?;
            Some(SecretValue::new(text.trim()))
        }
        None => None,
    };
    Ok(ModelSettings {
        agents_dir: section.agents_dir,
        watch_interval: std::time::Duration::from_secs(section.watch_interval_seconds),
        max_timeout: std::time::Duration::from_secs(section.max_timeout_seconds),
        max_history_messages: section.max_history_messages,
        max_agents: section.max_agents,
        prices: PriceTable { prices },
        budgets: section.budgets,
        secrets_key,
    })
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str, environment: &[(&str, &str)]) -> Result<ModelSettings, ConfigError> {
        let section: ModelsSection =
            serde_yaml::from_str(yaml).map_err(|error| ConfigError::Invalid {
                field: "yaml".to_owned(),
                message: error.to_string(),
            })?;
        let environment: HashMap<String, String> = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let mut section = section;
        apply_environment(&mut section, &environment)?;
        validate(section, &environment)
    }

    #[test]
    fn prices_make_costs_and_budgets_fall_back_to_the_default() {
        let settings = settings(
            "prices:\n  - { provider: openai, model: gpt-4o-mini, input_per_million: 0.15, output_per_million: 0.6 }\n\
             budgets:\n  default: { daily_tokens: 1000 }\n  orgs:\n    acme.example: { daily_cost: 5.0 }\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            settings
                .prices
                .cost_micros(ProviderKind::Openai, "gpt-4o-mini", 1_000_000, 1_000_000),
            750_000
        );
        assert_eq!(
            settings
                .prices
                .cost_micros(ProviderKind::Openai, "other", 10, 10),
            0
        );
        assert_eq!(
            settings.budget_of("acme.example"),
            Some(DailyBudget {
                daily_tokens: None,
                daily_cost: Some(5.0)
            })
        );
        assert_eq!(
            settings
                .budget_of("other.example")
                .and_then(|budget| budget.daily_tokens),
            Some(1000)
        );
        assert_eq!(settings.max_timeout.as_secs(), 600);
    }

    #[test]
    fn environment_sets_the_directory_timeout_and_secrets_key() {
        let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let settings = settings(
            "{}",
            &[
                (env::MODEL_AGENTS_DIR, "/srv/agents"),
                (env::MODEL_MAX_TIMEOUT, "1200"),
                (env::SECRETS_KEY, key),
            ],
        )
        .expect("valid");
        assert_eq!(settings.agents_dir, Some(PathBuf::from("/srv/agents")));
        assert_eq!(settings.max_timeout.as_secs(), 1200);
        assert_eq!(
            settings.secrets_key.as_ref().map(SecretValue::expose),
            Some(key)
        );
        assert!(!format!("{settings:?}").contains(key));
    }

    #[test]
    fn rejects_bad_sections_naming_the_field_and_never_the_key() {
        for (yaml, environment, expected) in [
            ("max_timeout_seconds: 0\n", &[][..], "models.max_timeout_seconds"),
            (
                "prices:\n  - { provider: openai, model: m, input_per_million: -1, output_per_million: 1 }\n",
                &[][..],
                "models.prices[0]",
            ),
            (
                "budgets:\n  orgs:\n    acme.example: { daily_tokens: 0 }\n",
                &[][..],
                "models.budgets.orgs.acme.example",
            ),
            ("{}", &[(env::SECRETS_KEY, "c2hvcnQ=")][..], env::SECRETS_KEY),
            ("{}", &[(env::MODEL_MAX_TIMEOUT, "soon")][..], env::MODEL_MAX_TIMEOUT),
        ] {
            let error = settings(yaml, environment).expect_err(yaml);
            let text = error.to_string();
            assert!(text.contains(expected), "{yaml}: {text}");
            assert!(!text.contains("c2hvcnQ="), "{text}");
        }
    }
}
