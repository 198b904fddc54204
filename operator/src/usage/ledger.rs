//! The usage ledger: everything gateways reported, folded exactly once (totals per budget window, key,
//! route; backend health), with each reporter's sequence watermark and outstanding budget grants.
//!
//! Folding is pure; [`super::store`] persists the ledger before any acknowledgement leaves, so a report
//! that was acknowledged is in the ledger, and a report that was folded is never folded again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_crds::usage::{
    BackendHealthReport, BudgetGrant, CircuitState, NanoUsd, Reporter, UsageAck, UsageDelta,
    UsageReport,
};
use sluice_crds::window::Window;

use super::grants::grant;

/// Version of the persisted ledger layout.
pub const LEDGER_FORMAT: u32 = 1;

/// Running totals of a key or a route, since it was first reported.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub requests: u64,
    #[serde(default)]
    pub failed_requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub estimated_tokens: u64,
    pub cost_nano_usd: NanoUsd,
    #[serde(default)]
    pub cache_hits: u64,
    #[serde(default)]
    pub saved_nano_usd: NanoUsd,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
}

impl Totals {
    fn add(&mut self, delta: &UsageDelta) {
        self.requests = self.requests.saturating_add(delta.requests);
        self.failed_requests = self.failed_requests.saturating_add(delta.failed_requests);
        self.input_tokens = self.input_tokens.saturating_add(delta.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(delta.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(delta.cached_input_tokens);
        self.estimated_tokens = self.estimated_tokens.saturating_add(delta.estimated_tokens);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(delta.cost_nano_usd);
        self.cache_hits = self.cache_hits.saturating_add(delta.cache_hits);
        self.saved_nano_usd = self.saved_nano_usd.saturating_add(delta.saved_nano_usd);
        self.last_used = self.last_used.max(Some(delta.last_used));
    }
}

/// Spend of one budget in its current window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetTotals {
    pub window_start: DateTime<Utc>,
    pub spent_nano_usd: NanoUsd,
    /// Input plus output tokens.
    pub tokens: u64,
    pub requests: u64,
}

impl BudgetTotals {
    fn empty(window_start: DateTime<Utc>) -> Self {
        Self {
            window_start,
            spent_nano_usd: 0,
            tokens: 0,
            requests: 0,
        }
    }
}

/// What the ledger remembers of one gateway process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReporterState {
    pub gateway: String,
    /// Highest sequence folded.
    pub watermark: u64,
    pub last_seen: DateTime<Utc>,
    /// Outstanding grant per budget id (the reporter may admit up to this much until its next report).
    #[serde(default)]
    pub grants: BTreeMap<String, NanoUsd>,
}

/// The latest health one reporter saw of one backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReporterHealth {
    pub circuit: CircuitState,
    pub attempts: u64,
    pub failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<f64>,
    pub at: DateTime<Utc>,
}

/// Health of one backend of one route: each reporter's latest view, and the last failure seen by any.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendLedger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reporters: BTreeMap<String, ReporterHealth>,
}

/// Limit and current window of a budget the operator knows (from the Budget resources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetTerms {
    pub limit_nano_usd: NanoUsd,
    pub window: Window,
}

/// The folded state, as persisted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub format: u32,
    /// Budget id → spend in its current window.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetTotals>,
    /// VirtualKey id → totals.
    #[serde(default)]
    pub keys: BTreeMap<String, Totals>,
    /// LLMRoute id → totals.
    #[serde(default)]
    pub routes: BTreeMap<String, Totals>,
    /// LLMRoute id → backend name → health.
    #[serde(default)]
    pub backends: BTreeMap<String, BTreeMap<String, BackendLedger>>,
    /// `pod/instance` → reporter state.
    #[serde(default)]
    pub reporters: BTreeMap<String, ReporterState>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            format: LEDGER_FORMAT,
            budgets: BTreeMap::new(),
            keys: BTreeMap::new(),
            routes: BTreeMap::new(),
            backends: BTreeMap::new(),
            reporters: BTreeMap::new(),
        }
    }
}

/// The result of folding one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    pub ack: UsageAck,
    /// Whether the ledger changed (a duplicate changes nothing).
    pub changed: bool,
}

/// How the ledger names a reporter.
pub fn reporter_id(reporter: &Reporter) -> String {
    format!("{}/{}", reporter.pod, reporter.instance)
}

impl Ledger {
    /// Starts a new window for every budget whose window moved (a calendar boundary passed, or its spec
    /// changed); returns whether any did.
    pub fn roll_windows(&mut self, terms: &BTreeMap<String, BudgetTerms>) -> bool {
        let mut rolled = false;
        for (id, terms) in terms {
            let start = terms.window.start;
            match self.budgets.get_mut(id) {
                Some(totals) if totals.window_start == start => {}
                Some(totals) => {
                    *totals = BudgetTotals::empty(start);
                    rolled = true;
                }
                None => {
                    self.budgets.insert(id.clone(), BudgetTotals::empty(start));
                    rolled = true;
                }
            }
        }
        rolled
    }

    /// Folds `report` unless it was folded before, and answers with the budgets' global spend and the
    /// reporter's new grants. Budgets missing from `terms` (unknown or invalid) are not charged or granted.
    pub fn fold(
        &mut self,
        report: &UsageReport,
        terms: &BTreeMap<String, BudgetTerms>,
        now: DateTime<Utc>,
    ) -> Folded {
        self.fold_with(report, terms, now, DateTime::<Utc>::MIN_UTC)
    }

    /// [`Ledger::fold`], not counting the grants of reporters last seen before `grants_stale_before`:
    /// a gateway that stopped reporting (killed, partitioned) no longer holds back the others' grants.
    pub fn fold_with(
        &mut self,
        report: &UsageReport,
        terms: &BTreeMap<String, BudgetTerms>,
        now: DateTime<Utc>,
        grants_stale_before: DateTime<Utc>,
    ) -> Folded {
        self.roll_windows(terms);
        let id = reporter_id(&report.reporter);
        if let Some(state) = self.reporters.get(&id)
            && report.sequence <= state.watermark
        {
            // Answer as the first time: the grants computed then are still the outstanding ones.
            let grants = state.grants.clone();
            return Folded {
                ack: UsageAck {
                    sequence: report.sequence,
                    duplicate: true,
                    budgets: self.budget_grants(grants, terms),
                },
                changed: false,
            };
        }
        for delta in &report.usage {
            self.keys.entry(delta.key.clone()).or_default().add(delta);
            self.routes
                .entry(delta.route.clone())
                .or_default()
                .add(delta);
            let charged: BTreeSet<&String> = delta.budgets.iter().collect();
            for budget in charged {
                if let Some(totals) = self.budgets.get_mut(budget.as_str())
                    && terms.contains_key(budget.as_str())
                {
                    totals.spent_nano_usd =
                        totals.spent_nano_usd.saturating_add(delta.cost_nano_usd);
                    totals.tokens = totals
                        .tokens
                        .saturating_add(delta.input_tokens.saturating_add(delta.output_tokens));
                    totals.requests = totals.requests.saturating_add(delta.requests);
                }
            }
        }
        self.fold_health(&id, &report.backends, now);

        let wanted: BTreeSet<String> = report
            .budgets
            .iter()
            .chain(report.usage.iter().flat_map(|delta| delta.budgets.iter()))
            .filter(|budget| terms.contains_key(budget.as_str()))
            .cloned()
            .collect();
        if report.last {
            // The reporter is gone for good: its grants return to the pool.
            self.reporters.remove(&id);
            self.drop_health_of(&id);
            let released = wanted.into_iter().map(|budget| (budget, 0)).collect();
            return Folded {
                ack: UsageAck {
                    sequence: report.sequence,
                    duplicate: false,
                    budgets: self.budget_grants(released, terms),
                },
                changed: true,
            };
        }
        let mut grants = BTreeMap::new();
        for budget in wanted {
            let Some(budget_terms) = terms.get(&budget) else {
                continue;
            };
            let spent = self
                .budgets
                .get(&budget)
                .map_or(0, |totals| totals.spent_nano_usd);
            let mut others: NanoUsd = 0;
            let mut active = 1usize;
            for (other, state) in &self.reporters {
                if *other == id || state.last_seen < grants_stale_before {
                    continue;
                }
                if let Some(granted) = state.grants.get(&budget) {
                    others = others.saturating_add(*granted);
                    active += 1;
                }
            }
            grants.insert(
                budget,
                grant(budget_terms.limit_nano_usd, spent, others, active),
            );
        }
        self.reporters.insert(
            id,
            ReporterState {
                gateway: report.gateway.clone(),
                watermark: report.sequence,
                last_seen: now,
                grants: grants.clone(),
            },
        );
        Folded {
            ack: UsageAck {
                sequence: report.sequence,
                duplicate: false,
                budgets: self.budget_grants(grants, terms),
            },
            changed: true,
        }
    }

    /// Forgets reporters silent since before `silent_since`, releasing their grants; returns how many.
    pub fn prune(&mut self, silent_since: DateTime<Utc>) -> usize {
        let gone: Vec<String> = self
            .reporters
            .iter()
            .filter(|(_, state)| state.last_seen < silent_since)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.reporters.remove(id);
            self.drop_health_of(id);
        }
        gone.len()
    }

    /// A reporter's health report replaces its previous one: a backend it no longer mentions was closed
    /// and idle for it. The last failure is kept per backend until a newer one.
    fn fold_health(&mut self, reporter: &str, reports: &[BackendHealthReport], now: DateTime<Utc>) {
        for backends in self.backends.values_mut() {
            for backend in backends.values_mut() {
                backend.reporters.remove(reporter);
            }
        }
        for report in reports {
            let backend = self
                .backends
                .entry(report.route.clone())
                .or_default()
                .entry(report.backend.clone())
                .or_default();
            backend.reporters.insert(
                reporter.to_owned(),
                ReporterHealth {
                    circuit: report.circuit,
                    attempts: report.attempts,
                    failures: report.failures,
                    p50_latency_ms: report.p50_latency_ms,
                    p95_latency_ms: report.p95_latency_ms,
                    at: now,
                },
            );
            if let Some(error) = &report.last_error {
                let time = report.last_error_time.unwrap_or(now);
                if backend.last_error_time.is_none_or(|last| time >= last) {
                    backend.last_error = Some(error.clone());
                    backend.last_error_time = Some(time);
                }
            }
        }
    }

    fn drop_health_of(&mut self, reporter: &str) {
        for backends in self.backends.values_mut() {
            for backend in backends.values_mut() {
                backend.reporters.remove(reporter);
            }
        }
    }

    fn budget_grants(
        &self,
        grants: BTreeMap<String, NanoUsd>,
        terms: &BTreeMap<String, BudgetTerms>,
    ) -> Vec<BudgetGrant> {
        grants
            .into_iter()
            .filter_map(|(id, granted)| {
                let terms = terms.get(&id)?;
                let totals = self.budgets.get(&id);
                Some(BudgetGrant {
                    window_start: terms.window.start,
                    resets_at: terms.window.resets_at,
                    spent_nano_usd: totals.map_or(0, |totals| totals.spent_nano_usd),
                    limit_nano_usd: terms.limit_nano_usd,
                    tokens: totals.map_or(0, |totals| totals.tokens),
                    grant_nano_usd: granted,
                    id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use sluice_crds::usage::PROTOCOL_VERSION;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, day, hour, 0, 0)
            .single()
            .expect("time")
    }

    fn terms(limit: NanoUsd, start: DateTime<Utc>) -> BTreeMap<String, BudgetTerms> {
        BTreeMap::from([(
            "team/monthly".to_owned(),
            BudgetTerms {
                limit_nano_usd: limit,
                window: Window {
                    start,
                    resets_at: None,
                },
            },
        )])
    }

    fn report(pod: &str, sequence: u64, cost: NanoUsd) -> UsageReport {
        UsageReport {
            protocol: PROTOCOL_VERSION,
            reporter: Reporter {
                pod: pod.into(),
                instance: "i1".into(),
            },
            sequence,
            gateway: "default".into(),
            config_hash: "h".into(),
            sent_at: at(2, 0),
            last: false,
            usage: vec![UsageDelta {
                key: "team/app".into(),
                route: "team/chat".into(),
                budgets: vec!["team/monthly".into(), "team/unknown".into()],
                requests: 2,
                input_tokens: 100,
                output_tokens: 50,
                cost_nano_usd: cost,
                last_used: at(2, 0),
                ..UsageDelta::default()
            }],
            backends: vec![],
            budgets: vec!["team/monthly".into()],
        }
    }

    #[test]
    fn a_report_is_folded_once_and_a_resend_is_a_duplicate() {
        let mut ledger = Ledger::default();
        let terms = terms(1_000_000, at(1, 0));
        let first = ledger.fold(&report("gw-0", 1, 300), &terms, at(2, 0));
        assert!(first.changed && !first.ack.duplicate);
        let again = ledger.fold(&report("gw-0", 1, 300), &terms, at(2, 0));
        assert!(!again.changed && again.ack.duplicate);
        assert_eq!(
            again.ack.budgets, first.ack.budgets,
            "a duplicate is answered as the original"
        );
        ledger.fold(&report("gw-0", 2, 200), &terms, at(2, 1));
        let key = &ledger.keys["team/app"];
        assert_eq!(
            (key.requests, key.input_tokens, key.cost_nano_usd),
            (4, 200, 500)
        );
        let budget = &ledger.budgets["team/monthly"];
        assert_eq!((budget.spent_nano_usd, budget.tokens), (500, 300));
        assert!(
            !ledger.budgets.contains_key("team/unknown"),
            "unknown budgets are not charged"
        );
        assert_eq!(ledger.reporters["gw-0/i1"].watermark, 2);
    }

    #[test]
    fn grants_of_several_reporters_stay_within_the_remainder() {
        let mut ledger = Ledger::default();
        let terms = terms(900, at(1, 0));
        let a = ledger.fold(&report("gw-a", 1, 0), &terms, at(2, 0));
        assert_eq!(
            a.ack.budgets[0].grant_nano_usd, 450,
            "alone: half, half kept for a newcomer"
        );
        let b = ledger.fold(&report("gw-b", 1, 0), &terms, at(2, 0));
        assert_eq!(
            b.ack.budgets[0].grant_nano_usd, 300,
            "a newcomer is served at once"
        );
        let a = ledger.fold(&report("gw-a", 2, 300), &terms, at(2, 0));
        assert_eq!(
            a.ack.budgets[0].grant_nano_usd, 200,
            "a third of the 600 left"
        );
        let b = ledger.fold(&report("gw-b", 2, 0), &terms, at(2, 0));
        assert_eq!(b.ack.budgets[0].grant_nano_usd, 200);
        let outstanding: NanoUsd = ledger
            .reporters
            .values()
            .flat_map(|state| state.grants.values())
            .sum();
        assert!(ledger.budgets["team/monthly"].spent_nano_usd + outstanding <= 900);
        // A reporter that says goodbye releases its grant.
        let mut last = report("gw-b", 3, 0);
        last.last = true;
        let bye = ledger.fold(&last, &terms, at(2, 0));
        assert_eq!(bye.ack.budgets[0].grant_nano_usd, 0);
        assert!(!ledger.reporters.contains_key("gw-b/i1"));
        let a = ledger.fold(&report("gw-a", 3, 0), &terms, at(2, 0));
        assert_eq!(a.ack.budgets[0].grant_nano_usd, 300);
    }

    #[test]
    fn the_grants_of_a_silent_reporter_stop_counting_after_the_grant_ttl() {
        let mut ledger = Ledger::default();
        let terms = terms(900, at(1, 0));
        ledger.fold(&report("gw-dead", 1, 0), &terms, at(2, 0));
        let held = ledger.fold(&report("gw-b", 1, 0), &terms, at(2, 0));
        assert_eq!(held.ack.budgets[0].grant_nano_usd, 300, "gw-dead holds 450");
        // An hour later gw-dead has not reported since: its grant no longer holds back gw-b.
        let later = ledger.fold_with(
            &report("gw-b", 2, 0),
            &terms,
            at(2, 1),
            at(2, 0) + chrono::Duration::minutes(1),
        );
        assert_eq!(later.ack.budgets[0].grant_nano_usd, 450);
        assert!(
            ledger.reporters.contains_key("gw-dead/i1"),
            "its watermark is kept"
        );
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let mut ledger = Ledger::default();
        ledger.fold(&report("gw-0", 1, 500), &terms(1_000, at(1, 0)), at(20, 0));
        assert_eq!(ledger.budgets["team/monthly"].spent_nano_usd, 500);
        let february = Utc
            .with_ymd_and_hms(2025, 2, 1, 0, 0, 0)
            .single()
            .expect("time");
        assert!(ledger.roll_windows(&terms(1_000, february)));
        assert_eq!(ledger.budgets["team/monthly"].spent_nano_usd, 0);
        let ack = ledger.fold(&report("gw-0", 2, 100), &terms(1_000, february), february);
        assert_eq!(ack.ack.budgets[0].spent_nano_usd, 100);
        assert_eq!(ack.ack.budgets[0].window_start, february);
        assert_eq!(
            ledger.keys["team/app"].cost_nano_usd, 600,
            "key totals never reset"
        );
    }

    #[test]
    fn silent_reporters_are_pruned_and_health_is_replaced_per_reporter() {
        let mut ledger = Ledger::default();
        let terms = terms(1_000, at(1, 0));
        let mut failing = report("gw-0", 1, 0);
        failing.backends = vec![BackendHealthReport {
            route: "team/chat".into(),
            backend: "a".into(),
            circuit: CircuitState::Open,
            attempts: 10,
            failures: 10,
            last_error: Some("upstream_5xx".into()),
            last_error_time: Some(at(2, 0)),
            ..BackendHealthReport::default()
        }];
        ledger.fold(&failing, &terms, at(2, 0));
        assert_eq!(
            ledger.backends["team/chat"]["a"].reporters["gw-0/i1"].circuit,
            CircuitState::Open
        );
        // The next report does not mention the backend: closed and idle for this reporter, last error kept.
        ledger.fold(&report("gw-0", 2, 0), &terms, at(2, 1));
        let backend = &ledger.backends["team/chat"]["a"];
        assert!(backend.reporters.is_empty());
        assert_eq!(backend.last_error.as_deref(), Some("upstream_5xx"));
        assert_eq!(ledger.prune(at(2, 2)), 1);
        assert!(ledger.reporters.is_empty());
    }
}
