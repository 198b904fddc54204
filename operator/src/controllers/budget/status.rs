//! Pure status of a Budget: the standard conditions, the current window, the spend folded from gateway
//! usage reports (spent, remaining, tokens, percent, state) and the thresholds crossed in this window,
//! each announced by one Event.

use chrono::{DateTime, Utc};
use kube::ResourceExt as _;
use sluice_crds::compile::Kind;
use sluice_crds::conditions::{THRESHOLD_REACHED, reason};
use sluice_crds::config::object_id;
use sluice_crds::usage::{nano_usd, usd};
use sluice_crds::v1alpha1::{Budget, BudgetState};

use super::window;
use crate::controllers::conditions::{Wanted, merge, standard, to_time};
use crate::controllers::status::{Announcement, StatusChange, StatusPlan};
use crate::usage::UsageView;
use crate::usage::view::BudgetSpend;

/// The status change for `budget`, or `None` when its status is already right (or it was not compiled).
pub fn compute(
    budget: &Budget,
    plan: &StatusPlan,
    usage: &UsageView,
    now: DateTime<Utc>,
) -> Option<StatusChange> {
    let namespace = budget.namespace().unwrap_or_default();
    let id = object_id(&namespace, &budget.name_any());
    let outcome = plan.outcome(Kind::Budget, &namespace, &budget.name_any())?;
    let in_snapshot = plan.in_snapshot(Kind::Budget, &id);
    let existing = budget.status.clone().unwrap_or_default();
    let generation = budget.metadata.generation;
    let mut desired = existing.clone();
    desired.observed_generation = generation;
    let window = window::current(
        budget.spec.window,
        &budget.spec.time_zone,
        now,
        created(budget, now),
    );
    desired.window_start = window.map(|window| to_time(window.start));
    desired.resets_at = window.and_then(|window| window.resets_at).map(to_time);

    let spend = window.map_or_else(BudgetSpend::default, |window| {
        usage.budget_spend(&id, window.start)
    });
    let limit = nano_usd(budget.spec.limit_usd);
    desired.spent_usd = usd(spend.spent_nano_usd);
    desired.remaining_usd = usd(limit.saturating_sub(spend.spent_nano_usd));
    desired.tokens = i64::try_from(spend.tokens).unwrap_or(i64::MAX);
    desired.percent = percent(spend, limit, budget.spec.token_limit);
    // A new window forgets what the previous one announced.
    let previous = if existing.window_start == desired.window_start {
        existing.last_threshold
    } else {
        None
    };
    let crossed: Vec<i32> = budget
        .spec
        .thresholds
        .iter()
        .copied()
        .filter(|threshold| {
            *threshold <= desired.percent && previous.is_none_or(|p| *threshold > p)
        })
        .collect();
    desired.last_threshold = previous.max(crossed.iter().copied().max());
    desired.state = if desired.percent >= 100 {
        BudgetState::Exceeded
    } else if budget
        .spec
        .thresholds
        .iter()
        .any(|threshold| *threshold < 100 && *threshold <= desired.percent)
    {
        BudgetState::Warning
    } else {
        BudgetState::Ok
    };
    let mut wanted = standard(outcome, in_snapshot, &plan.publication, &plan.gateway);
    wanted.push(threshold_condition(
        desired.last_threshold,
        desired.state,
        budget.spec.limit_usd,
    ));
    desired.conditions = merge(&existing.conditions, &wanted, generation, now);
    if desired == existing {
        return None;
    }
    let window_start = window.map(|window| window.start);
    let window_text = window_start.map_or_else(|| "-".to_owned(), |start| start.to_rfc3339());
    // One Event series per threshold and window.
    let window_tag = window_start.map_or_else(String::new, |start| {
        start.format("Window%Y%m%dT%H%MZ").to_string()
    });
    let announcements = crossed
        .iter()
        .map(|threshold| Announcement {
            warning: *threshold >= 100,
            reason: if *threshold >= 100 {
                reason::EXCEEDED
            } else {
                reason::WARNING
            },
            action: format!("Threshold{threshold}{window_tag}"),
            note: format!(
                "spend reached {threshold}% of the ${:.2} limit (${:.4} spent) in the window that started {window_text}",
                budget.spec.limit_usd, desired.spent_usd
            ),
        })
        .collect();
    let patch = serde_json::json!({
        "status": {
            "observedGeneration": desired.observed_generation,
            "conditions": desired.conditions,
            "spentUSD": desired.spent_usd,
            "remainingUSD": desired.remaining_usd,
            "tokens": desired.tokens,
            "percent": desired.percent,
            "state": desired.state,
            "windowStart": desired.window_start,
            "resetsAt": desired.resets_at,
            "lastThreshold": desired.last_threshold,
        }
    });
    Some(StatusChange {
        patch,
        before: existing.conditions,
        after: desired.conditions,
        announcements,
    })
}

/// Spend as a whole percentage (rounded down) of the money limit, or of the token limit when that is
/// further along. A zero limit is fully used by any spend.
fn percent(spend: BudgetSpend, limit: u64, token_limit: Option<i64>) -> i32 {
    let of = |used: u64, limit: u64| -> u128 {
        if limit == 0 {
            if used > 0 { 100 } else { 0 }
        } else {
            u128::from(used) * 100 / u128::from(limit)
        }
    };
    let money = of(spend.spent_nano_usd, limit);
    let tokens = token_limit
        .and_then(|limit| u64::try_from(limit).ok())
        .filter(|limit| *limit > 0)
        .map_or(0, |limit| of(spend.tokens, limit));
    i32::try_from(money.max(tokens)).unwrap_or(i32::MAX)
}

fn threshold_condition(last: Option<i32>, state: BudgetState, limit_usd: f64) -> Wanted {
    match last {
        Some(threshold) => Wanted {
            type_: THRESHOLD_REACHED,
            status: true,
            reason: if state == BudgetState::Exceeded {
                reason::EXCEEDED
            } else {
                reason::WARNING
            },
            message: format!("{threshold}% of the ${limit_usd:.2} limit reached in this window"),
        },
        None => Wanted {
            type_: THRESHOLD_REACHED,
            status: false,
            reason: reason::WITHIN_BUDGET,
            message: "no threshold reached in this window".to_owned(),
        },
    }
}

/// When `budget`'s current window ends, for scheduling the status update at the reset.
pub fn next_reset(budget: &Budget, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    window::current(
        budget.spec.window,
        &budget.spec.time_zone,
        now,
        created(budget, now),
    )?
    .resets_at
}

/// When a total budget's window starts: the Budget's creation.
pub fn created(budget: &Budget, now: DateTime<Utc>) -> DateTime<Utc> {
    budget
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|time| DateTime::from_timestamp(time.0.as_second(), 0))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone as _;
    use sluice_crds::compile::{ObjectRef, Outcome};
    use sluice_crds::v1alpha1::BudgetState;

    use super::*;
    use crate::controllers::conditions::Publication;

    fn budget(window: &str) -> Budget {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "monthly", "namespace": "team-a", "generation": 1},
            "spec": {"limitUSD": 100.0, "window": window, "timeZone": "Europe/Berlin"}
        }))
        .expect("budget")
    }

    fn plan() -> StatusPlan {
        let object = ObjectRef {
            kind: Kind::Budget,
            namespace: "team-a".into(),
            name: "monthly".into(),
        };
        StatusPlan {
            gateway: "default".into(),
            outcomes: BTreeMap::from([(
                object,
                Outcome {
                    accepted: Ok(()),
                    resolved_refs: Ok(()),
                },
            )]),
            published: BTreeSet::from([(Kind::Budget, "team-a/monthly".to_owned())]),
            publication: Publication::Published,
            key_facts: BTreeMap::new(),
        }
    }

    #[test]
    fn status_shows_the_window_in_the_budget_time_zone_and_state_ok() {
        let now = Utc
            .with_ymd_and_hms(2025, 6, 15, 12, 0, 0)
            .single()
            .expect("time");
        let change =
            compute(&budget("monthly"), &plan(), &UsageView::default(), now).expect("a change");
        let status = &change.patch["status"];
        assert_eq!(status["windowStart"], "2025-05-31T22:00:00Z");
        assert_eq!(status["resetsAt"], "2025-06-30T22:00:00Z");
        assert_eq!(
            status["state"],
            serde_json::to_value(BudgetState::Ok).expect("state")
        );
        let mut applied = budget("monthly");
        applied.status = Some(serde_json::from_value(status.clone()).expect("status"));
        assert_eq!(compute(&applied, &plan(), &UsageView::default(), now), None);
        let next_month = Utc
            .with_ymd_and_hms(2025, 7, 1, 0, 0, 0)
            .single()
            .expect("time");
        let rolled = compute(&applied, &plan(), &UsageView::default(), next_month)
            .expect("the window moved");
        assert_eq!(
            rolled.patch["status"]["windowStart"],
            "2025-06-30T22:00:00Z"
        );
        assert_eq!(
            next_reset(&applied, now),
            Some(
                Utc.with_ymd_and_hms(2025, 6, 30, 22, 0, 0)
                    .single()
                    .expect("time")
            )
        );
    }

    #[test]
    fn a_total_budget_never_resets() {
        let now = Utc
            .with_ymd_and_hms(2025, 6, 15, 12, 0, 0)
            .single()
            .expect("time");
        let change =
            compute(&budget("total"), &plan(), &UsageView::default(), now).expect("a change");
        assert!(change.patch["status"]["resetsAt"].is_null());
        assert_eq!(next_reset(&budget("total"), now), None);
    }

    fn spent(window_start: DateTime<Utc>, nano: u64) -> UsageView {
        let mut view = UsageView::default();
        view.budgets.insert(
            "team-a/monthly".into(),
            (
                window_start,
                BudgetSpend {
                    spent_nano_usd: nano,
                    tokens: 1_000,
                },
            ),
        );
        view
    }

    fn apply(budget: &mut Budget, change: &StatusChange) {
        budget.status =
            Some(serde_json::from_value(change.patch["status"].clone()).expect("status"));
    }

    #[test]
    fn spend_sets_the_figures_and_each_threshold_is_announced_once_per_window() {
        let start = Utc
            .with_ymd_and_hms(2025, 5, 31, 22, 0, 0)
            .single()
            .expect("time");
        let now = Utc
            .with_ymd_and_hms(2025, 6, 15, 12, 0, 0)
            .single()
            .expect("time");
        let mut budget = budget("monthly");
        let change = compute(&budget, &plan(), &spent(start, 55_500_000_000), now).expect("change");
        let status = &change.patch["status"];
        assert_eq!(status["spentUSD"], 55.5);
        assert_eq!(status["remainingUSD"], 44.5);
        assert_eq!(
            (status["percent"].as_i64(), status["tokens"].as_i64()),
            (Some(55), Some(1_000))
        );
        assert_eq!(status["state"], "Warning");
        assert_eq!(status["lastThreshold"], 50);
        let reasons: Vec<&str> = change.announcements.iter().map(|a| a.reason).collect();
        assert_eq!(reasons, [reason::WARNING]);
        assert!(
            change.announcements[0].note.contains("50%"),
            "{:?}",
            change.announcements
        );
        apply(&mut budget, &change);

        // More spend, same threshold: figures change, nothing is announced again.
        let change = compute(&budget, &plan(), &spent(start, 60_000_000_000), now).expect("change");
        assert!(change.announcements.is_empty());
        apply(&mut budget, &change);
        // Past 80 and 100 at once: both announced, in order; the state is Exceeded.
        let change =
            compute(&budget, &plan(), &spent(start, 101_000_000_000), now).expect("change");
        let thresholds: Vec<bool> = change.announcements.iter().map(|a| a.warning).collect();
        assert_eq!(thresholds, [false, true], "80 % then 100 %");
        assert_eq!(change.patch["status"]["state"], "Exceeded");
        assert_eq!(change.patch["status"]["remainingUSD"], 0.0);
        apply(&mut budget, &change);
        let condition = budget
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == THRESHOLD_REACHED))
            .expect("condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", reason::EXCEEDED)
        );

        // The next month starts from nothing: no spend in the new window, the thresholds are re-armed.
        let july = Utc
            .with_ymd_and_hms(2025, 7, 1, 0, 0, 0)
            .single()
            .expect("time");
        let change =
            compute(&budget, &plan(), &spent(start, 101_000_000_000), july).expect("change");
        let status = &change.patch["status"];
        assert_eq!(
            (status["spentUSD"].as_f64(), status["state"].as_str()),
            (Some(0.0), Some("Ok"))
        );
        assert!(status["lastThreshold"].is_null());
        apply(&mut budget, &change);
        let new_start = Utc
            .with_ymd_and_hms(2025, 6, 30, 22, 0, 0)
            .single()
            .expect("time");
        let change =
            compute(&budget, &plan(), &spent(new_start, 50_000_000_000), july).expect("change");
        assert_eq!(
            change.announcements.len(),
            1,
            "50 % is announced again in the new window"
        );
    }

    #[test]
    fn a_token_limit_further_along_sets_the_percentage() {
        let spend = BudgetSpend {
            spent_nano_usd: 10,
            tokens: 900,
        };
        assert_eq!(percent(spend, 100, Some(1_000)), 90);
        assert_eq!(percent(spend, 100, None), 10);
        assert_eq!(percent(BudgetSpend::default(), 0, None), 0);
        assert_eq!(percent(spend, 0, None), 100);
    }
}
