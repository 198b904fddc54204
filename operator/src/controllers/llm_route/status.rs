//! Pure status of an LLMRoute: the standard conditions, usage totals and per-backend health from gateway
//! reports, and `backendsReady` (backends whose circuit is not open).

use chrono::{DateTime, Utc};
use kube::ResourceExt as _;
use sluice_crds::compile::Kind;
use sluice_crds::config::object_id;
use sluice_crds::v1alpha1::LLMRoute;

use crate::controllers::conditions::{merge, standard};
use crate::controllers::status::{StatusChange, StatusPlan};
use crate::usage::UsageView;
use crate::usage::health::is_ready;

/// The status change for `route`, or `None` when its status is already right (or it was not compiled).
pub fn compute(
    route: &LLMRoute,
    plan: &StatusPlan,
    usage: &UsageView,
    now: DateTime<Utc>,
) -> Option<StatusChange> {
    let namespace = route.namespace().unwrap_or_default();
    let id = object_id(&namespace, &route.name_any());
    let outcome = plan.outcome(Kind::LLMRoute, &namespace, &route.name_any())?;
    let in_snapshot = plan.in_snapshot(Kind::LLMRoute, &id);
    let existing = route.status.clone().unwrap_or_default();
    let wanted = standard(outcome, in_snapshot, &plan.publication, &plan.gateway);
    let generation = route.metadata.generation;
    let mut desired = existing.clone();
    desired.observed_generation = generation;
    desired.conditions = merge(&existing.conditions, &wanted, generation, now);
    // Backends the gateways report, in spec order; a backend nobody reported is ready (its circuit
    // is closed wherever it was tried, or it was not tried).
    let reported = usage.backends.get(&id);
    desired.backends = route
        .spec
        .backends
        .iter()
        .filter_map(|backend| reported?.get(&backend.name).cloned())
        .collect();
    let total = route.spec.backends.len();
    let ready = if in_snapshot && outcome.published() {
        total
            - desired
                .backends
                .iter()
                .filter(|health| !is_ready(health))
                .count()
    } else {
        0
    };
    desired.backends_ready = Some(format!("{ready}/{total}"));
    if let Some(totals) = usage.routes.get(&id) {
        desired.usage = Some(totals.clone());
    }
    if desired == existing {
        return None;
    }
    let mut patch = serde_json::json!({
        "status": {
            "observedGeneration": desired.observed_generation,
            "conditions": desired.conditions,
            "backendsReady": desired.backends_ready,
            "backends": desired.backends,
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone as _;
    use sluice_crds::compile::{ObjectRef, Outcome, Problem};
    use sluice_crds::conditions::{READY, reason};

    use super::*;
    use crate::controllers::conditions::Publication;

    fn route() -> LLMRoute {
        let mut route: LLMRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "LLMRoute",
            "metadata": {"name": "chat", "namespace": "team-a", "generation": 3},
            "spec": {"model": "chat", "backends": [
                {"name": "a", "provider": "openai", "model": "gpt-4o", "credentialsRef": {"name": "s", "key": "k"}},
                {"name": "b", "provider": "openai", "model": "gpt-4o-mini", "credentialsRef": {"name": "s", "key": "k"}}
            ]}
        }))
        .expect("route");
        route.status = None;
        route
    }

    fn plan(outcome: Outcome, published: bool) -> StatusPlan {
        let object = ObjectRef {
            kind: Kind::LLMRoute,
            namespace: "team-a".into(),
            name: "chat".into(),
        };
        StatusPlan {
            gateway: "default".into(),
            outcomes: BTreeMap::from([(object, outcome)]),
            published: if published {
                BTreeSet::from([(Kind::LLMRoute, "team-a/chat".to_owned())])
            } else {
                BTreeSet::new()
            },
            publication: Publication::Published,
            key_facts: BTreeMap::new(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_published_route_is_ready_with_all_backends_and_the_generation() {
        let ok = Outcome {
            accepted: Ok(()),
            resolved_refs: Ok(()),
        };
        let change = compute(
            &route(),
            &plan(ok.clone(), true),
            &UsageView::default(),
            now(),
        )
        .expect("a change");
        let status = &change.patch["status"];
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["backendsReady"], "2/2");
        let ready = change
            .after
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reason::PUBLISHED)
        );

        let mut applied = route();
        applied.status = Some(serde_json::from_value(status.clone()).expect("status"));
        assert_eq!(
            compute(
                &applied,
                &plan(ok, true),
                &UsageView::default(),
                now() + chrono::Duration::hours(1)
            ),
            None,
            "nothing changed, nothing to patch"
        );
    }

    #[test]
    fn a_route_with_a_missing_secret_is_not_ready_and_has_no_ready_backends() {
        let broken = Outcome {
            accepted: Ok(()),
            resolved_refs: Err(Problem {
                reason: reason::SECRET_NOT_FOUND,
                message: "Secret team-a/s not found".into(),
            }),
        };
        let change = compute(&route(), &plan(broken, false), &UsageView::default(), now())
            .expect("a change");
        assert_eq!(change.patch["status"]["backendsReady"], "0/2");
        let ready = change
            .after
            .iter()
            .find(|c| c.type_ == READY)
            .expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::UNRESOLVED_REFS)
        );
        assert!(ready.message.contains("not found"));
    }

    #[test]
    fn a_route_the_compiler_did_not_see_is_left_alone() {
        let mut other = route();
        other.metadata.name = Some("other".into());
        assert_eq!(
            compute(
                &other,
                &plan(
                    Outcome {
                        accepted: Ok(()),
                        resolved_refs: Ok(())
                    },
                    true
                ),
                &UsageView::default(),
                now()
            ),
            None
        );
    }

    #[test]
    fn an_open_circuit_shows_in_the_backend_health_and_backends_ready() {
        let ok = Outcome {
            accepted: Ok(()),
            resolved_refs: Ok(()),
        };
        let mut view = UsageView::default();
        view.backends.insert(
            "team-a/chat".into(),
            BTreeMap::from([(
                "b".to_owned(),
                sluice_crds::v1alpha1::BackendHealth {
                    name: "b".into(),
                    circuit: Some("Open".into()),
                    error_rate: Some(1.0),
                    last_error: Some("upstream_5xx".into()),
                    ..Default::default()
                },
            )]),
        );
        let change = compute(&route(), &plan(ok, true), &view, now()).expect("a change");
        let status = &change.patch["status"];
        assert_eq!(status["backendsReady"], "1/2");
        assert_eq!(status["backends"][0]["name"], "b");
        assert_eq!(status["backends"][0]["circuit"], "Open");
        assert_eq!(status["backends"][0]["lastError"], "upstream_5xx");
    }
}
