//! Metering metric families: rate-limit and budget refusals, budget spend ratios, usage reports and
//! estimated tokens. Registered by [`crate::metrics::Metrics`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    /// `key` or `route`.
    scope: &'static str,
    /// `requests` or `tokens`.
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The families, registered once.
#[derive(Debug, Clone, Default)]
pub struct MeteringFamilies {
    rate_limited: Family<RateLimitLabels, Counter>,
    budget_refusals: Family<BudgetLabels, Counter>,
    budget_spent_ratio: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    usage_reports: Family<ResultLabels, Counter>,
    estimated_tokens: Counter,
}

impl MeteringFamilies {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self::default();
        registry.register(
            "sluice_rate_limited",
            "Requests refused by a rate limit, by scope (key, route) and limit (requests, tokens)",
            families.rate_limited.clone(),
        );
        registry.register(
            "sluice_budget_refusals",
            "Requests refused because a budget was exhausted (or unknown while the operator was away)",
            families.budget_refusals.clone(),
        );
        registry.register(
            "sluice_budget_spent_ratio",
            "Spend of a budget's current window over its limit, as this gateway knows it",
            families.budget_spent_ratio.clone(),
        );
        registry.register(
            "sluice_usage_reports",
            "Usage reports sent to the operator, by result (ok, duplicate, error)",
            families.usage_reports.clone(),
        );
        registry.register(
            "sluice_estimated_tokens",
            "Tokens estimated with the tokenizer because the provider reported no usage",
            families.estimated_tokens.clone(),
        );
        families
    }

    pub fn count_rate_limited(&self, scope: &'static str, limit: &'static str) {
        self.rate_limited
            .get_or_create(&RateLimitLabels { scope, limit })
            .inc();
    }

    pub fn count_budget_refusal(&self, budget: &str) {
        self.budget_refusals
            .get_or_create(&BudgetLabels {
                budget: budget.to_owned(),
            })
            .inc();
    }

    pub fn set_budget_spent_ratio(&self, budget: &str, ratio: f64) {
        self.budget_spent_ratio
            .get_or_create(&BudgetLabels {
                budget: budget.to_owned(),
            })
            .set(ratio);
    }

    pub fn count_report(&self, result: &'static str) {
        self.usage_reports
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn count_estimated_tokens(&self, tokens: u64) {
        self.estimated_tokens.inc_by(tokens);
    }
}
