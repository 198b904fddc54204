//! Pure status of a Budget: the standard conditions, the state, and the current window's start and reset time.

use chrono::{DateTime, Utc};
use kube::ResourceExt as _;
use sluice_crds::compile::Kind;
use sluice_crds::config::object_id;
use sluice_crds::v1alpha1::Budget;

use super::window;
use crate::controllers::conditions::{merge, standard, to_time};
use crate::controllers::status::{StatusChange, StatusPlan};

/// The status change for `budget`, or `None` when its status is already right (or it was not compiled).
pub fn compute(budget: &Budget, plan: &StatusPlan, now: DateTime<Utc>) -> Option<StatusChange> {
    let namespace = budget.namespace().unwrap_or_default();
    let outcome = plan.outcome(Kind::Budget, &namespace, &budget.name_any())?;
    let in_snapshot = plan.in_snapshot(Kind::Budget, &object_id(&namespace, &budget.name_any()));
    let existing = budget.status.clone().unwrap_or_default();
    let generation = budget.metadata.generation;
    let mut desired = existing.clone();
    desired.observed_generation = generation;
    desired.conditions = merge(
        &existing.conditions,
        &standard(outcome, in_snapshot, &plan.publication, &plan.gateway),
        generation,
        now,
    );
    let window = window::current(
        budget.spec.window,
        &budget.spec.time_zone,
        now,
        created(budget, now),
    );
    desired.window_start = window.map(|window| to_time(window.start));
    desired.resets_at = window.and_then(|window| window.resets_at).map(to_time);
    if desired == existing {
        return None;
    }
    // Spend, remaining and thresholds come from gateway usage reports, written elsewhere; the state
    // stays what they last made it (Ok for a new budget).
    let patch = serde_json::json!({
        "status": {
            "observedGeneration": desired.observed_generation,
            "conditions": desired.conditions,
            "state": desired.state,
            "windowStart": desired.window_start,
            "resetsAt": desired.resets_at,
        }
    });
    Some(StatusChange {
        patch,
        before: existing.conditions,
        after: desired.conditions,
    })
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

fn created(budget: &Budget, now: DateTime<Utc>) -> DateTime<Utc> {
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
        let change = compute(&budget("monthly"), &plan(), now).expect("a change");
        let status = &change.patch["status"];
        assert_eq!(status["windowStart"], "2025-05-31T22:00:00Z");
        assert_eq!(status["resetsAt"], "2025-06-30T22:00:00Z");
        assert_eq!(
            status["state"],
            serde_json::to_value(BudgetState::Ok).expect("state")
        );
        let mut applied = budget("monthly");
        applied.status = Some(serde_json::from_value(status.clone()).expect("status"));
        assert_eq!(compute(&applied, &plan(), now), None);
        let next_month = Utc
            .with_ymd_and_hms(2025, 7, 1, 0, 0, 0)
            .single()
            .expect("time");
        let rolled = compute(&applied, &plan(), next_month).expect("the window moved");
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
        let change = compute(&budget("total"), &plan(), now).expect("a change");
        assert!(change.patch["status"]["resetsAt"].is_null());
        assert_eq!(next_reset(&budget("total"), now), None);
    }
}
