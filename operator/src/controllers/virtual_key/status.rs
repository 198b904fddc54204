//! Pure status of a VirtualKey: the standard conditions (with `Disabled` / `Expired` as the reason of a
//! published key that the gateway refuses), the key Secret's name, the key's display prefix and its
//! usage totals from gateway reports.

use chrono::{DateTime, Utc};
use kube::ResourceExt as _;
use sluice_crds::compile::Kind;
use sluice_crds::conditions::{READY, reason};
use sluice_crds::config::object_id;
use sluice_crds::v1alpha1::VirtualKey;

use crate::controllers::conditions::{Wanted, merge, standard, to_time};
use crate::controllers::status::{StatusChange, StatusPlan};
use crate::usage::UsageView;

/// The status change for `key`, or `None` when its status is already right (or it was not compiled).
pub fn compute(
    key: &VirtualKey,
    plan: &StatusPlan,
    usage: &UsageView,
    now: DateTime<Utc>,
) -> Option<StatusChange> {
    let namespace = key.namespace().unwrap_or_default();
    let id = object_id(&namespace, &key.name_any());
    let outcome = plan.outcome(Kind::VirtualKey, &namespace, &key.name_any())?;
    let mut wanted = standard(
        outcome,
        plan.in_snapshot(Kind::VirtualKey, &id),
        &plan.publication,
        &plan.gateway,
    );
    refine_ready(&mut wanted, key, now);
    let existing = key.status.clone().unwrap_or_default();
    let generation = key.metadata.generation;
    let facts = plan.key_facts.get(&id).cloned().unwrap_or_default();
    let mut desired = existing.clone();
    desired.observed_generation = generation;
    desired.conditions = merge(&existing.conditions, &wanted, generation, now);
    desired.secret_name = facts.secret_name;
    desired.key_prefix = facts.key_prefix;
    desired.rotation_generation = facts.rotation_generation;
    desired.previous_key_expires_at = facts.previous_key_expires_at.map(to_time);
    // Keys without reports keep what they show (the ledger may have been reset by hand).
    if let Some(totals) = usage.keys.get(&id) {
        desired.usage = Some(totals.clone());
    }
    if desired == existing {
        return None;
    }
    let mut patch = serde_json::json!({
        "status": {
            "observedGeneration": desired.observed_generation,
            "conditions": desired.conditions,
            "secretName": desired.secret_name,
            "keyPrefix": desired.key_prefix,
            "rotationGeneration": desired.rotation_generation,
            "previousKeyExpiresAt": desired.previous_key_expires_at,
        }
    });
    if let Some(totals) = &desired.usage {
        patch["status"]["usage"] = serde_json::json!(totals);
    }
    Some(StatusChange {
        patch,
        before: existing.conditions,
        after: desired.conditions,
        announcements: Vec::new(),
    })
}

/// A disabled or expired key is published (so the gateway can say why it refuses it): it is Ready, and
/// the reason says that it does not work.
fn refine_ready(wanted: &mut [Wanted], key: &VirtualKey, now: DateTime<Utc>) {
    let Some(ready) = wanted
        .iter_mut()
        .find(|want| want.type_ == READY && want.status)
    else {
        return;
    };
    let expired = key
        .spec
        .expires_at
        .as_ref()
        .is_some_and(|expires| expires.0.as_second() <= now.timestamp());
    if key.spec.disabled {
        ready.reason = reason::DISABLED;
        ready.message = format!(
            "{}; the key is disabled, so the gateway refuses it",
            ready.message
        );
    } else if expired {
        ready.reason = reason::EXPIRED;
        ready.message = format!(
            "{}; the key has expired, so the gateway refuses it",
            ready.message
        );
    }
}

/// When `key` expires, if in the future: its status changes then.
pub fn next_expiry(key: &VirtualKey, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let expires = DateTime::from_timestamp(key.spec.expires_at.as_ref()?.0.as_second(), 0)?;
    (expires > now).then_some(expires)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone as _;
    use sluice_crds::compile::{ObjectRef, Outcome};

    use super::*;
    use crate::controllers::conditions::Publication;
    use crate::controllers::virtual_key::desired::KeyFacts;

    fn key(spec: serde_json::Value) -> VirtualKey {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "VirtualKey",
            "metadata": {"name": "ci", "namespace": "team-a", "generation": 2},
            "spec": spec
        }))
        .expect("key")
    }

    fn plan(facts: KeyFacts) -> StatusPlan {
        let object = ObjectRef {
            kind: Kind::VirtualKey,
            namespace: "team-a".into(),
            name: "ci".into(),
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
            published: BTreeSet::from([(Kind::VirtualKey, "team-a/ci".to_owned())]),
            publication: Publication::Published,
            key_facts: BTreeMap::from([("team-a/ci".to_owned(), facts)]),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
    }

    fn ready_reason(change: &StatusChange) -> (String, String) {
        let ready = change
            .after
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready");
        (ready.status.clone(), ready.reason.clone())
    }

    #[test]
    fn status_shows_secret_and_prefix_from_the_facts() {
        let facts = KeyFacts {
            secret_name: Some("ci-sluice-key".into()),
            key_prefix: Some("sk-sluice-AbCd".into()),
            rotation_generation: Some(1),
            previous_key_expires_at: Some(now() + chrono::Duration::hours(1)),
        };
        let change = compute(
            &key(serde_json::json!({})),
            &plan(facts),
            &UsageView::default(),
            now(),
        )
        .expect("a change");
        let status = &change.patch["status"];
        assert_eq!(status["secretName"], "ci-sluice-key");
        assert_eq!(status["keyPrefix"], "sk-sluice-AbCd");
        assert_eq!(status["rotationGeneration"], 1);
        assert_eq!(status["previousKeyExpiresAt"], "2025-01-01T01:00:00Z");
        assert_eq!(
            ready_reason(&change),
            ("True".into(), reason::PUBLISHED.into())
        );
    }

    #[test]
    fn disabled_and_expired_keys_say_so_in_ready() {
        let disabled = compute(
            &key(serde_json::json!({"disabled": true})),
            &plan(KeyFacts::default()),
            &UsageView::default(),
            now(),
        )
        .expect("change");
        assert_eq!(
            ready_reason(&disabled),
            ("True".into(), reason::DISABLED.into())
        );
        let expired = key(serde_json::json!({"expiresAt": "2024-12-31T00:00:00Z"}));
        let change = compute(
            &expired,
            &plan(KeyFacts::default()),
            &UsageView::default(),
            now(),
        )
        .expect("change");
        assert_eq!(
            ready_reason(&change),
            ("True".into(), reason::EXPIRED.into())
        );
        let later = key(serde_json::json!({"expiresAt": "2025-02-01T00:00:00Z"}));
        assert_eq!(
            next_expiry(&later, now()),
            Some(
                Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0)
                    .single()
                    .expect("time")
            )
        );
        assert_eq!(next_expiry(&expired, now()), None);
    }

    #[test]
    fn usage_totals_appear_and_a_key_without_reports_keeps_its_figures() {
        let mut view = UsageView::default();
        let totals = sluice_crds::v1alpha1::UsageTotals {
            requests: 7,
            input_tokens: 700,
            output_tokens: 70,
            cost_usd: 0.0123,
            last_used_at: Some(to_time(now())),
        };
        view.keys.insert("team-a/ci".into(), totals.clone());
        let change = compute(
            &key(serde_json::json!({})),
            &plan(KeyFacts::default()),
            &view,
            now(),
        )
        .expect("change");
        assert_eq!(change.patch["status"]["usage"]["requests"], 7);
        assert_eq!(change.patch["status"]["usage"]["costUSD"], 0.0123);
        let mut applied = key(serde_json::json!({}));
        applied.status =
            Some(serde_json::from_value(change.patch["status"].clone()).expect("status"));
        assert_eq!(
            compute(&applied, &plan(KeyFacts::default()), &view, now()),
            None
        );
        assert_eq!(
            compute(
                &applied,
                &plan(KeyFacts::default()),
                &UsageView::default(),
                now()
            ),
            None,
            "no report since the ledger was reset: keep the figures"
        );
    }
}
