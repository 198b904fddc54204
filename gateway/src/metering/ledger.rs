//! The gateway's books: every budget's [`Account`] and the usage not yet reported, under one lock, so
//! that a report and the budget amounts it moves always agree (nothing settles "between" them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use sluice_crds::config::BudgetConfig;
use sluice_crds::usage::{BudgetGrant, NanoUsd, UsageDelta};
use sluice_crds::v1alpha1::BudgetAction;
use tokio::sync::Notify;

use super::budget::{Account, Authority, Headroom};
use crate::metrics::TokenCounts;

/// Money reserved for one request, per budget it is charged to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    pub budgets: Vec<(String, NanoUsd)>,
}

/// Why a budget refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// The reservation does not fit the budget's headroom (or its token limit is reached).
    Exceeded {
        budget: String,
        resets_at: Option<DateTime<Utc>>,
    },
    /// A fail-closed budget has no grant (the operator has not answered since the gateway started).
    Unavailable { budget: String },
}

/// What one finished request adds to the books.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    pub key: &'a Arc<str>,
    pub route: &'a Arc<str>,
    pub failed: bool,
    pub tokens: TokenCounts,
    pub estimated: u64,
    pub cost: NanoUsd,
    pub cache_hit: bool,
    /// What a cache hit would have cost.
    pub saved: NanoUsd,
}

/// Budget accounts and unreported usage.
#[derive(Debug)]
pub struct Ledger {
    authority: Authority,
    /// Where a `total` window starts when the gateway grants itself.
    started: DateTime<Utc>,
    /// The last report reached the operator.
    reachable: AtomicBool,
    state: Mutex<State>,
    /// Woken when a report should go out before the next interval: a grant is running low or a new
    /// window began.
    pub report_soon: Notify,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// By (key, route); only kept when there is an operator to report to.
    usage: HashMap<(Arc<str>, Arc<str>), UsageDelta>,
}

impl Ledger {
    pub fn new(authority: Authority, started: DateTime<Utc>) -> Self {
        Self {
            authority,
            started,
            reachable: AtomicBool::new(true),
            state: Mutex::default(),
            report_soon: Notify::new(),
        }
    }

    pub fn authority(&self) -> Authority {
        self.authority
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters only: a panic elsewhere cannot leave them half-updated in a harmful way.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `amount` against every budget; all or nothing. `alert-only` budgets never refuse.
    pub fn reserve(
        &self,
        budgets: &[&BudgetConfig],
        amount: NanoUsd,
        now: DateTime<Utc>,
    ) -> Result<Hold, BudgetRefusal> {
        let reachable = self.reachable.load(Ordering::Acquire);
        let mut state = self.lock();
        let mut report_soon = false;
        for config in budgets {
            let account = state.accounts.entry(config.id.clone()).or_default();
            report_soon |= account.roll(config, now, self.started);
            if config.action != BudgetAction::Block {
                continue;
            }
            let exceeded = || BudgetRefusal::Exceeded {
                budget: config.id.clone(),
                resets_at: account.window.and_then(|window| window.resets_at),
            };
            if config
                .token_limit
                .is_some_and(|limit| account.tokens(self.authority) >= limit)
            {
                return Err(exceeded());
            }
            match account.headroom(config, self.authority, reachable) {
                Headroom::Amount(headroom) if headroom >= amount => {}
                Headroom::Amount(_) => return Err(exceeded()),
                Headroom::Unknown => {
                    return Err(BudgetRefusal::Unavailable {
                        budget: config.id.clone(),
                    });
                }
            }
        }
        let mut hold = Hold::default();
        for config in budgets {
            if let Some(account) = state.accounts.get_mut(&config.id) {
                account.reserved += amount;
                report_soon |= self.authority == Authority::Operator && account.grant_running_low();
                hold.budgets.push((config.id.clone(), amount));
            }
        }
        drop(state);
        if report_soon {
            self.report_soon.notify_one();
        }
        Ok(hold)
    }

    /// Releases a hold and books what the request really consumed.
    pub fn settle(&self, hold: &Hold, charge: &Charge<'_>, now: DateTime<Utc>) {
        let operator = self.authority == Authority::Operator;
        let tokens = charge.tokens.input + charge.tokens.output;
        let mut state = self.lock();
        for (id, reserved) in &hold.budgets {
            if let Some(account) = state.accounts.get_mut(id) {
                account.reserved = account.reserved.saturating_sub(*reserved);
                account.settled += charge.cost;
                account.settled_tokens += tokens;
                if operator {
                    account.unreported += charge.cost;
                    account.unreported_tokens += tokens;
                }
            }
        }
        if !operator {
            return;
        }
        let delta = state
            .usage
            .entry((charge.key.clone(), charge.route.clone()))
            .or_insert_with(|| UsageDelta {
                key: charge.key.to_string(),
                route: charge.route.to_string(),
                budgets: hold.budgets.iter().map(|(id, _)| id.clone()).collect(),
                last_used: now,
                ..UsageDelta::default()
            });
        for (id, _) in &hold.budgets {
            if !delta.budgets.contains(id) {
                delta.budgets.push(id.clone());
            }
        }
        delta.requests += 1;
        delta.failed_requests += u64::from(charge.failed);
        delta.input_tokens += charge.tokens.input;
        delta.output_tokens += charge.tokens.output;
        delta.cached_input_tokens += charge.tokens.cached_input;
        delta.estimated_tokens += charge.estimated;
        delta.cost_nano_usd += charge.cost;
        delta.cache_hits += u64::from(charge.cache_hit);
        delta.saved_nano_usd += charge.saved;
        delta.last_used = delta.last_used.max(now);
    }

    /// The usage since the last report, moving the budgets' unreported spend into the report in flight.
    pub fn take_report(&self) -> Vec<UsageDelta> {
        let mut state = self.lock();
        for account in state.accounts.values_mut() {
            account.in_report += std::mem::take(&mut account.unreported);
            account.in_report_tokens += std::mem::take(&mut account.unreported_tokens);
        }
        let mut usage: Vec<UsageDelta> = state.usage.drain().map(|(_, delta)| delta).collect();
        usage.sort_by(|a, b| (&a.key, &a.route).cmp(&(&b.key, &b.route)));
        usage
    }

    /// The report in flight was folded; `grants` replace the previous ones.
    pub fn acknowledged(&self, grants: &[BudgetGrant]) {
        self.reachable.store(true, Ordering::Release);
        let mut state = self.lock();
        for account in state.accounts.values_mut() {
            account.in_report = 0;
            account.in_report_tokens = 0;
        }
        for grant in grants {
            let account = state.accounts.entry(grant.id.clone()).or_default();
            // A grant for another window than the gateway's is kept only if the gateway has none yet;
            // the next admission rolls the account and drops it if it is stale.
            if grant.resets_at.is_none() {
                // A total window starts when the budget was created, which only the operator knows.
                account.window = Some(sluice_crds::window::Window {
                    start: grant.window_start,
                    resets_at: None,
                });
                account.grant = Some(grant.clone());
            } else if account
                .window
                .is_none_or(|window| window.start == grant.window_start)
            {
                account.grant = Some(grant.clone());
            }
        }
    }

    /// A report failed: budgets follow their failure mode until the next acknowledgement.
    pub fn unreachable(&self) {
        self.reachable.store(false, Ordering::Release);
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Spend over limit of a budget as this gateway knows it (0 for an unknown or zero budget).
    pub fn spent_ratio(&self, id: &str) -> f64 {
        let state = self.lock();
        state.accounts.get(id).map_or(0.0, |account| {
            if account.limit == 0 {
                0.0
            } else {
                account.spent(self.authority) as f64 / account.limit as f64
            }
        })
    }

    /// A copy of one account (tests, status).
    pub fn account(&self, id: &str) -> Option<Account> {
        self.lock().accounts.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use sluice_crds::v1alpha1::{BudgetWindow, FailureMode};

    use super::*;

    fn budget(id: &str, limit_usd: f64, action: BudgetAction) -> BudgetConfig {
        BudgetConfig {
            id: id.into(),
            limit_usd,
            token_limit: None,
            window: BudgetWindow::Daily,
            time_zone: "UTC".into(),
            thresholds: vec![],
            action,
            stop_streams: false,
            failure_mode: FailureMode::Open,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, 10, 0, 0).unwrap()
    }

    fn charge<'a>(key: &'a Arc<str>, route: &'a Arc<str>, cost: NanoUsd) -> Charge<'a> {
        Charge {
            key,
            route,
            failed: false,
            tokens: TokenCounts {
                input: 10,
                output: 5,
                cached_input: 0,
            },
            estimated: 0,
            cost,
            cache_hit: false,
            saved: 0,
        }
    }

    #[test]
    fn reservations_refuse_what_does_not_fit_and_settle_to_the_actual_cost() {
        let ledger = Ledger::new(Authority::Local, now());
        let block = budget("t/b", 1e-6, BudgetAction::Block); // 1,000 nano-dollars
        let alert = budget("t/a", 1e-6, BudgetAction::AlertOnly);
        let (key, route): (Arc<str>, Arc<str>) = ("t/k".into(), "t/r".into());
        let first = ledger.reserve(&[&block, &alert], 600, now()).unwrap();
        assert_eq!(
            ledger.reserve(&[&block], 600, now()),
            Err(BudgetRefusal::Exceeded {
                budget: "t/b".into(),
                resets_at: Some(Utc.with_ymd_and_hms(2026, 5, 5, 0, 0, 0).unwrap()),
            })
        );
        ledger.settle(&first, &charge(&key, &route, 100), now());
        // 100 spent, nothing reserved: 900 left.
        let second = ledger.reserve(&[&block, &alert], 900, now()).unwrap();
        ledger.settle(&second, &charge(&key, &route, 950), now());
        assert!(
            ledger.reserve(&[&block], 1, now()).is_err(),
            "spent 1,050 of 1,000"
        );
        // alert-only never refuses, yet counts.
        assert!(ledger.reserve(&[&alert], 1_000_000, now()).is_ok());
        assert!((ledger.spent_ratio("t/a") - 1.05).abs() < 1e-9);
        assert!(
            ledger.take_report().is_empty(),
            "no usage is kept without an operator"
        );
    }

    #[test]
    fn reports_move_spend_into_flight_and_acks_install_grants() {
        let ledger = Ledger::new(Authority::Operator, now());
        let block = budget("t/b", 1.0, BudgetAction::Block);
        let (key, route): (Arc<str>, Arc<str>) = ("t/k".into(), "t/r".into());
        let hold = ledger.reserve(&[&block], 100, now()).unwrap();
        ledger.settle(&hold, &charge(&key, &route, 70), now());
        let report = ledger.take_report();
        assert_eq!(report.len(), 1);
        assert_eq!(
            (
                report[0].requests,
                report[0].cost_nano_usd,
                report[0].input_tokens
            ),
            (1, 70, 10)
        );
        assert_eq!(report[0].budgets, vec!["t/b".to_owned()]);
        let account = ledger.account("t/b").unwrap();
        assert_eq!((account.unreported, account.in_report), (0, 70));
        ledger.unreachable();
        ledger.acknowledged(&[BudgetGrant {
            id: "t/b".into(),
            window_start: account.window.unwrap().start,
            resets_at: None,
            spent_nano_usd: 500,
            limit_nano_usd: 1_000_000_000,
            tokens: 15,
            grant_nano_usd: 200,
        }]);
        assert!(ledger.is_reachable());
        let account = ledger.account("t/b").unwrap();
        assert_eq!(account.in_report, 0);
        assert_eq!(account.spent(Authority::Operator), 500);
        // The grant (200) now bounds admission.
        assert!(ledger.reserve(&[&block], 201, now()).is_err());
        let held = ledger.reserve(&[&block], 200, now()).unwrap();
        assert_eq!(held.budgets, vec![("t/b".to_owned(), 200)]);
        assert!(ledger.take_report().is_empty());
    }
}
