//! The read-only picture of usage the status writer folds into `Budget`, `VirtualKey` and `LLMRoute`
//! status: taken from the ledger after each persisted batch, in the units the status types use.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sluice_crds::usage::{NanoUsd, usd};
use sluice_crds::v1alpha1::{BackendHealth, UsageTotals};

use super::health;
use super::ledger::{Ledger, Totals};
use crate::controllers::conditions::to_time;

/// Spend of one budget in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetSpend {
    pub spent_nano_usd: NanoUsd,
    pub tokens: u64,
}

/// Usage as the statuses show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageView {
    /// Budget id → window start and spend in that window.
    pub budgets: BTreeMap<String, (DateTime<Utc>, BudgetSpend)>,
    pub keys: BTreeMap<String, UsageTotals>,
    pub routes: BTreeMap<String, UsageTotals>,
    /// Route id → backend name → merged health.
    pub backends: BTreeMap<String, BTreeMap<String, BackendHealth>>,
}

impl UsageView {
    /// The view of `ledger`.
    pub fn of(ledger: &Ledger) -> Self {
        Self {
            budgets: ledger
                .budgets
                .iter()
                .map(|(id, totals)| {
                    (
                        id.clone(),
                        (
                            totals.window_start,
                            BudgetSpend {
                                spent_nano_usd: totals.spent_nano_usd,
                                tokens: totals.tokens,
                            },
                        ),
                    )
                })
                .collect(),
            keys: totals_of(&ledger.keys),
            routes: totals_of(&ledger.routes),
            backends: ledger
                .backends
                .iter()
                .map(|(route, backends)| {
                    (
                        route.clone(),
                        backends
                            .iter()
                            .map(|(name, backend)| (name.clone(), health::merge(name, backend)))
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// Spend of budget `id` in the window that starts at `window_start` (zero for another window: the
    /// ledger has not seen a report since the window rolled).
    pub fn budget_spend(&self, id: &str, window_start: DateTime<Utc>) -> BudgetSpend {
        match self.budgets.get(id) {
            Some((start, spend)) if *start == window_start => *spend,
            _ => BudgetSpend::default(),
        }
    }
}

fn totals_of(totals: &BTreeMap<String, Totals>) -> BTreeMap<String, UsageTotals> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    totals
        .iter()
        .map(|(id, totals)| {
            (
                id.clone(),
                UsageTotals {
                    requests: count(totals.requests),
                    input_tokens: count(totals.input_tokens),
                    output_tokens: count(totals.output_tokens),
                    cost_usd: usd(totals.cost_nano_usd),
                    last_used_at: totals.last_used.map(to_time),
                },
            )
        })
        .collect()
}
