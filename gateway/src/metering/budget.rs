//! One budget's account on this gateway: its current window, money reserved by requests in flight,
//! money settled and not yet acknowledged by the operator, and the operator's last grant — and from
//! these, how much more this gateway may admit.
//!
//! # Who grants
//!
//! - **Local** (no usage endpoint; `--local` mode or a single gateway): the gateway is the only spender.
//!   It grants itself `limit − settled in this window − reserved`, computing windows itself with
//!   [`sluice_crds::window`].
//! - **Operator**: every acknowledgement carries a [`BudgetGrant`]: how much more this gateway may admit
//!   (reserved plus settled-but-unacknowledged) until the next one. The operator keeps the grants of all
//!   gateways within the budget's remaining amount.
//!
//! # Operator unreachable
//!
//! After a report fails, each budget follows its `failureMode`:
//! - `open`: keep admitting on local knowledge: the last known global spend plus everything this gateway
//!   admitted since, against the full limit. Replicas cannot see each other meanwhile, so together they
//!   may overspend by up to (replicas − 1) × what each admits during the outage.
//! - `closed`: spend only what is left of the last grant, then refuse; with no grant at all (the gateway
//!   started while the operator was away) refuse at once (503 `budget_unavailable`).

use chrono::{DateTime, Utc};
use sluice_crds::config::BudgetConfig;
use sluice_crds::usage::{BudgetGrant, NanoUsd};
use sluice_crds::v1alpha1::{BudgetWindow, FailureMode};
use sluice_crds::window::{self, Window};

/// Who grants spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Local,
    Operator,
}

/// What an account may still admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headroom {
    Amount(NanoUsd),
    /// Fail-closed budget without any grant: nothing may be admitted until the operator answers.
    Unknown,
}

/// One budget's books on this gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub window: Option<Window>,
    /// The budget's limit, as last configured.
    pub limit: NanoUsd,
    /// Money reserved by admitted requests that have not settled.
    pub reserved: NanoUsd,
    /// Settled by this gateway in the current window.
    pub settled: NanoUsd,
    pub settled_tokens: u64,
    /// Settled and not yet in a report.
    pub unreported: NanoUsd,
    pub unreported_tokens: u64,
    /// In the report in flight (not yet acknowledged).
    pub in_report: NanoUsd,
    pub in_report_tokens: u64,
    /// The operator's last grant for the current window.
    pub grant: Option<BudgetGrant>,
}

impl Account {
    /// Moves to the window containing `now`. Returns whether a new window began (the old grant is void).
    pub fn roll(
        &mut self,
        config: &BudgetConfig,
        now: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> bool {
        self.limit = sluice_crds::usage::nano_usd(config.limit_usd);
        // A total window never rolls; its start is the budget's creation as the operator knows it (or
        // this gateway's start in local mode), whichever was installed first.
        if config.window == BudgetWindow::Total && self.window.is_some() {
            return false;
        }
        let current =
            window::current(config.window, &config.time_zone, now, started).unwrap_or(Window {
                start: started,
                resets_at: None,
            });
        if self.window.is_some_and(|w| w.start == current.start) {
            return false;
        }
        let first = self.window.is_none();
        self.window = Some(current);
        self.settled = 0;
        self.settled_tokens = 0;
        if self
            .grant
            .as_ref()
            .is_some_and(|grant| grant.window_start != current.start)
        {
            self.grant = None;
        }
        !first
    }

    /// Admitted but not yet folded by the operator.
    pub fn consumption(&self) -> NanoUsd {
        self.reserved + self.unreported + self.in_report
    }

    /// How much more may be admitted.
    pub fn headroom(
        &self,
        config: &BudgetConfig,
        authority: Authority,
        reachable: bool,
    ) -> Headroom {
        let limit = sluice_crds::usage::nano_usd(config.limit_usd);
        match authority {
            Authority::Local => {
                Headroom::Amount(limit.saturating_sub(self.settled + self.reserved))
            }
            Authority::Operator => match (&self.grant, reachable, config.failure_mode) {
                (Some(grant), true, _) | (Some(grant), false, FailureMode::Closed) => {
                    Headroom::Amount(grant.grant_nano_usd.saturating_sub(self.consumption()))
                }
                (Some(grant), false, FailureMode::Open) => Headroom::Amount(
                    limit.saturating_sub(grant.spent_nano_usd + self.consumption()),
                ),
                // Before the first grant: what this gateway alone has admitted in the window.
                (None, _, FailureMode::Open) => Headroom::Amount(
                    limit.saturating_sub(self.consumption().max(self.settled + self.reserved)),
                ),
                (None, _, FailureMode::Closed) => Headroom::Unknown,
            },
        }
    }

    /// Tokens counted against `tokenLimit` in this window.
    pub fn tokens(&self, authority: Authority) -> u64 {
        match (authority, &self.grant) {
            (Authority::Operator, Some(grant)) => {
                grant.tokens + self.unreported_tokens + self.in_report_tokens
            }
            _ => self.settled_tokens,
        }
    }

    /// Spend in the window as far as this gateway knows (global spend plus its own unfolded spend).
    pub fn spent(&self, authority: Authority) -> NanoUsd {
        match (authority, &self.grant) {
            (Authority::Operator, Some(grant)) => {
                grant.spent_nano_usd + self.unreported + self.in_report
            }
            _ => self.settled,
        }
    }

    /// Whether the grant is mostly used, so a report should go out now for a fresh one.
    pub fn grant_running_low(&self) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|grant| self.consumption().saturating_mul(2) >= grant.grant_nano_usd)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use sluice_crds::v1alpha1::BudgetAction;

    use super::*;

    fn config(failure_mode: FailureMode) -> BudgetConfig {
        BudgetConfig {
            id: "team/b".into(),
            limit_usd: 1.0,
            token_limit: None,
            window: BudgetWindow::Monthly,
            time_zone: "UTC".into(),
            thresholds: vec![50, 80, 100],
            action: BudgetAction::Block,
            stop_streams: false,
            failure_mode,
        }
    }

    fn at(month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0).unwrap()
    }

    fn grant(window_start: DateTime<Utc>, spent: NanoUsd, grant: NanoUsd) -> BudgetGrant {
        BudgetGrant {
            id: "team/b".into(),
            window_start,
            resets_at: None,
            spent_nano_usd: spent,
            limit_nano_usd: 1_000_000_000,
            tokens: 0,
            grant_nano_usd: grant,
        }
    }

    #[test]
    fn local_authority_grants_the_limit_minus_spend_and_reservations() {
        let config = config(FailureMode::Open);
        let mut account = Account::default();
        account.roll(&config, at(3, 10), at(1, 1));
        account.reserved = 300_000_000;
        account.settled = 500_000_000;
        assert_eq!(
            account.headroom(&config, Authority::Local, true),
            Headroom::Amount(200_000_000)
        );
    }

    #[test]
    fn a_new_month_starts_from_zero_and_voids_the_grant() {
        let config = config(FailureMode::Open);
        let mut account = Account::default();
        assert!(
            !account.roll(&config, at(3, 10), at(1, 1)),
            "the first window is no rollover"
        );
        let march = account.window.unwrap().start;
        account.settled = 900_000_000;
        account.grant = Some(grant(march, 900_000_000, 50_000_000));
        assert!(!account.roll(&config, at(3, 31), at(1, 1)));
        assert!(account.roll(&config, at(4, 1), at(1, 1)));
        assert_eq!(account.settled, 0);
        assert_eq!(account.grant, None);
        assert_eq!(
            account.window.unwrap().start,
            Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn grants_bound_admission_and_failure_modes_decide_without_the_operator() {
        let start = at(3, 1);
        let mut account = Account {
            reserved: 10,
            unreported: 20,
            in_report: 30,
            grant: Some(grant(start, 400_000_000, 100)),
            ..Account::default()
        };
        let open = config(FailureMode::Open);
        let closed = config(FailureMode::Closed);
        // Reachable: the grant minus what was admitted since.
        assert_eq!(
            account.headroom(&open, Authority::Operator, true),
            Headroom::Amount(40)
        );
        // Unreachable, open: the whole limit minus the last global spend and local consumption.
        assert_eq!(
            account.headroom(&open, Authority::Operator, false),
            Headroom::Amount(1_000_000_000 - 400_000_000 - 60)
        );
        // Unreachable, closed: what is left of the last grant.
        assert_eq!(
            account.headroom(&closed, Authority::Operator, false),
            Headroom::Amount(40)
        );
        account.grant = None;
        assert_eq!(
            account.headroom(&closed, Authority::Operator, true),
            Headroom::Unknown
        );
        assert_eq!(
            account.headroom(&open, Authority::Operator, false),
            Headroom::Amount(1_000_000_000 - 60)
        );
    }

    #[test]
    fn a_grant_half_used_asks_for_a_report() {
        let mut account = Account {
            grant: Some(grant(at(3, 1), 0, 100)),
            reserved: 49,
            ..Account::default()
        };
        assert!(!account.grant_running_low());
        account.reserved = 50;
        assert!(account.grant_running_low());
    }
}
