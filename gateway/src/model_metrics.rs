//! Model agents' figures on `/metrics` (issue 17): tokens and cost by
//! organisation, as the providers reported them, and the calls daily
//! budgets refused. The serving glue records into [`ModelUsageMetrics`];
//! `/metrics` reads it at each scrape (a `prometheus-client` collector).
//!
//! Counters are per process (as every `/metrics` counter is); the day's
//! totals that budgets enforce live in the shared database. At most
//! [`MAX_ORG_LABELS`] organisations get series of their own; later ones
//! share `other`, so a flood of organisations cannot grow the page.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Organisations with series of their own.
pub const MAX_ORG_LABELS: usize = 100;

/// One organisation's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OrgCounters {
    tokens_in: u64,
    tokens_out: u64,
    cost_micros: u64,
    calls: u64,
    refused: u64,
}

/// Model usage counters since the process started.
#[derive(Debug, Default)]
pub struct ModelUsageMetrics {
    by_org: Mutex<BTreeMap<String, OrgCounters>>,
}

// === impl ModelUsageMetrics ===

impl ModelUsageMetrics {
    fn update(&self, org: &str, change: impl FnOnce(&mut OrgCounters)) {
        let mut by_org = self
            .by_org
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = if by_org.contains_key(org) || by_org.len() < MAX_ORG_LABELS {
            org
        } else {
            "other"
        };
        change(by_org.entry(label.to_owned()).or_default());
    }

    /// Records one model call's usage.
    pub fn record(&self, org: &str, tokens_in: u64, tokens_out: u64, cost_micros: u64) {
        self.update(org, |counters| {
            counters.tokens_in = counters.tokens_in.saturating_add(tokens_in);
            counters.tokens_out = counters.tokens_out.saturating_add(tokens_out);
            counters.cost_micros = counters.cost_micros.saturating_add(cost_micros);
            counters.calls = counters.calls.saturating_add(1);
        });
    }

    /// Records a call a daily budget refused before the provider saw it.
    pub fn refused(&self, org: &str) {
        self.update(org, |counters| {
            counters.refused = counters.refused.saturating_add(1);
        });
    }

    fn snapshot(&self) -> BTreeMap<String, OrgCounters> {
        self.by_org
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Reads one counter of an organisation.
type Read = fn(&OrgCounters) -> u64;

impl prometheus_client::collector::Collector for ModelUsageMetrics {
    /// Tokens, cost, calls and budget refusals by organisation, read at
    /// each scrape (the encoder adds the counters' `_total`).
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::MetricType;
        let by_org = self.snapshot();
        let mut family = encoder.encode_descriptor(
            "convergio_model_tokens",
            "Tokens model providers reported, by organisation and direction.",
            None,
            MetricType::Counter,
        )?;
        for (org, counters) in &by_org {
            for (direction, tokens) in [("in", counters.tokens_in), ("out", counters.tokens_out)] {
                let labels = [("org", org.as_str()), ("direction", direction)];
                ConstCounter::new(tokens).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "convergio_model_cost",
            "Cost of model calls by the price table, by organisation.",
            None,
            MetricType::Counter,
        )?;
        for (org, counters) in &by_org {
            let cost = counters.cost_micros as f64 / 1_000_000.0;
            ConstCounter::new(cost).encode(family.encode_family(&[("org", org.as_str())])?)?;
        }
        let counts: [(&str, &str, Read); 2] = [
            (
                "convergio_model_calls",
                "Model calls that reported usage, by organisation.",
                |counters| counters.calls,
            ),
            (
                "convergio_model_budget_refusals",
                "Model calls a daily budget stopped before the provider, by organisation.",
                |counters| counters.refused,
            ),
        ];
        for (name, help, value) in counts {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (org, counters) in &by_org {
                ConstCounter::new(value(counters))
                    .encode(family.encode_family(&[("org", org.as_str())])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn render(metrics: ModelUsageMetrics) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Arc::new(metrics)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        text
    }

    #[test]
    fn renders_usage_cost_and_refusals_by_org() {
        let metrics = ModelUsageMetrics::default();
        metrics.record("acme.example", 10, 5, 1_500_000);
        metrics.record("acme.example", 1, 1, 0);
        metrics.refused("acme.example");
        let text = render(metrics);
        for line in [
            "convergio_model_tokens_total{org=\"acme.example\",direction=\"in\"} 11",
            "convergio_model_tokens_total{org=\"acme.example\",direction=\"out\"} 6",
            "convergio_model_cost_total{org=\"acme.example\"} 1.5",
            "convergio_model_calls_total{org=\"acme.example\"} 2",
            "convergio_model_budget_refusals_total{org=\"acme.example\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn organisations_past_the_label_limit_share_other() {
        let metrics = ModelUsageMetrics::default();
        for index in 0..MAX_ORG_LABELS + 5 {
            metrics.record(&format!("o{index}.example"), 1, 0, 0);
        }
        let text = render(metrics);
        assert!(
            text.contains("convergio_model_calls_total{org=\"other\"} 5"),
            "{text}"
        );
    }
}
