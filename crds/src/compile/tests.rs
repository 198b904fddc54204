//! Tests of the compiler as a whole: isolation of broken resources, conflicts, references, keys,
//! determinism and scale.

use std::time::Instant;

use pretty_assertions::assert_eq;

use super::fixtures::{World, budget, created, data, key, key_value, now, route};
use super::synthetic::Synthetic;
use super::{
    KEY_DATA_CURRENT, KEY_DATA_PREVIOUS, KEY_DATA_PREVIOUS_EXPIRES_AT, Kind, compile,
    generated_key_secret_name,
};
use crate::conditions::reason;
use crate::config::{MAX_SHARD_BYTES, hash_key, publish_snapshot};

const OPENAI_KEY: &str = "sk-openai-team-a-0000";

fn openai_route(model: &str) -> String {
    format!(
        "model: {model}
backends:
  - name: openai
    provider: openai
    model: gpt-4o
    credentialsRef: {{name: provider-keys, key: openai}}"
    )
}

/// Team A with a provider Secret, a monthly budget and one healthy route.
fn world() -> World {
    let mut world = World::default();
    world.secrets.insert(
        "team-a",
        "provider-keys",
        data(&[("openai", OPENAI_KEY), ("anthropic", "sk-ant-a")]),
    );
    world
        .budgets
        .push(budget("team-a", "monthly", "limitUSD: 100"));
    world
        .routes
        .push(route("team-a", "healthy", &openai_route("healthy")));
    world
}

#[test]
fn resources_of_other_gateways_get_no_outcome_and_stay_out() {
    let mut world = world();
    world.routes.push(route(
        "team-a",
        "staging-route",
        &format!("gateway: staging\n{}", openai_route("x")),
    ));
    world
        .keys
        .push(key("team-a", "staging-key", "gateway: staging"));
    world.budgets.push(budget(
        "team-a",
        "staging-budget",
        "{gateway: staging, limitUSD: 1}",
    ));
    let compiled = world.compile("default");
    assert_eq!(compiled.outcomes.len(), 2, "{:?}", compiled.outcomes.keys());
    assert_eq!(compiled.route_ids(), vec!["team-a/healthy"]);
    assert_eq!(compiled.snapshot.config.gateway, "default");

    let staging = world.compile("staging");
    assert_eq!(staging.route_ids(), vec!["team-a/staging-route"]);
    assert_eq!(staging.snapshot.config.budgets.len(), 1);
}

#[test]
fn a_broken_reference_excludes_only_that_route() {
    let cases = [
        (
            "{name: missing, key: openai}",
            reason::SECRET_NOT_FOUND,
            "Secret team-a/missing not found",
        ),
        (
            "{name: provider-keys, key: gemini}",
            reason::SECRET_KEY_NOT_FOUND,
            "has no key \"gemini\"",
        ),
        (
            "{name: provider-keys, key: openai, namespace: team-b}",
            reason::REF_NOT_PERMITTED,
            "another namespace",
        ),
    ];
    for (reference, want_reason, want_message) in cases {
        let mut world = world();
        world
            .secrets
            .insert("team-b", "provider-keys", data(&[("openai", "sk-team-b")]));
        let spec = format!(
            "model: broken\nbackends: [{{name: openai, provider: openai, model: gpt-4o, credentialsRef: {reference}}}]"
        );
        world.routes.push(route("team-a", "broken", &spec));
        let compiled = world.compile("default");

        let broken = compiled.outcome(Kind::LLMRoute, "team-a", "broken");
        assert_eq!(
            broken.accepted,
            Ok(()),
            "{reference}: the spec itself is fine"
        );
        let problem = broken.resolved_refs.as_ref().unwrap_err();
        assert_eq!(problem.reason, want_reason, "{reference}");
        assert!(
            problem.message.contains(want_message),
            "{reference}: {}",
            problem.message
        );
        assert!(
            problem
                .message
                .starts_with("spec.backends[0].credentialsRef: "),
            "{}",
            problem.message
        );

        assert!(
            compiled
                .outcome(Kind::LLMRoute, "team-a", "healthy")
                .published()
        );
        assert_eq!(compiled.route_ids(), vec!["team-a/healthy"], "{reference}");
        let credentials: Vec<&str> = compiled
            .snapshot
            .secrets
            .credentials
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            credentials,
            vec!["team-a/provider-keys/openai"],
            "{reference}"
        );
        assert_eq!(
            compiled.snapshot.secrets.credentials["team-a/provider-keys/openai"].expose(),
            OPENAI_KEY
        );
    }
}

#[test]
fn spec_and_reference_problems_are_reported_together() {
    let mut world = world();
    let spec = "model: both
timeouts: {connect: 5x}
backends: [{name: openai, provider: openai, model: gpt-4o, credentialsRef: {name: missing, key: k}}]";
    world.routes.push(route("team-a", "both", spec));
    let outcome = world
        .compile("default")
        .outcome(Kind::LLMRoute, "team-a", "both")
        .clone();
    let accepted = outcome.accepted.unwrap_err();
    assert_eq!(accepted.reason, reason::INVALID);
    assert!(
        accepted
            .message
            .starts_with("spec.timeouts.connect: invalid duration \"5x\""),
        "{}",
        accepted.message
    );
    assert_eq!(
        outcome.resolved_refs.unwrap_err().reason,
        reason::SECRET_NOT_FOUND
    );
}

#[test]
fn the_older_route_keeps_a_contested_model_name() {
    // (older route, younger route, contested name, field named on the loser)
    let cases = [
        ("model: chat", "model: chat", "chat", "spec.model"),
        (
            "model: chat\naliases: [gpt-4o]",
            "model: gpt-4o",
            "gpt-4o",
            "spec.model",
        ),
        (
            "model: chat",
            "model: other\naliases: [chat]",
            "chat",
            "spec.aliases",
        ),
    ];
    for (older, younger, name, field) in cases {
        let backend = "backends: [{name: local, provider: openai-compatible, model: m, endpoint: 'http://vllm:8000/v1'}]";
        let older = created(
            route("team-b", "first", &format!("{older}\n{backend}")),
            100,
        );
        let younger = created(
            route("team-a", "second", &format!("{younger}\n{backend}")),
            200,
        );
        for routes in [
            vec![older.clone(), younger.clone()],
            vec![younger.clone(), older.clone()],
        ] {
            let world = World {
                routes,
                ..World::default()
            };
            let compiled = world.compile("default");
            assert!(
                compiled
                    .outcome(Kind::LLMRoute, "team-b", "first")
                    .published(),
                "{name}"
            );
            let problem = compiled
                .outcome(Kind::LLMRoute, "team-a", "second")
                .accepted
                .clone()
                .unwrap_err();
            assert_eq!(problem.reason, reason::CONFLICT);
            assert_eq!(
                problem.message,
                format!(
                    "{field}: model name {name:?} is already served by LLMRoute team-b/first, which is older; rename one of them"
                )
            );
            assert_eq!(compiled.route_ids(), vec!["team-b/first"]);
        }
    }
}

#[test]
fn without_creation_times_the_namespace_and_name_break_the_tie() {
    let world = World {
        routes: vec![
            route("team-b", "a", &openai_route("chat")),
            route("team-a", "z", &openai_route("chat")),
        ],
        ..world()
    };
    let compiled = world.compile("default");
    assert!(
        compiled
            .outcome(Kind::LLMRoute, "team-a", "z")
            .accepted
            .is_ok()
    );
    assert_eq!(
        compiled
            .outcome(Kind::LLMRoute, "team-b", "a")
            .accepted
            .as_ref()
            .unwrap_err()
            .reason,
        reason::CONFLICT
    );
}

#[test]
fn an_invalid_route_claims_no_name_but_an_unresolved_one_keeps_its_claim() {
    let mut world = world();
    // Older but invalid: the younger route with the same name is served.
    world.routes.push(created(
        route(
            "team-a",
            "invalid",
            &format!("{}\ntimeouts: {{total: x}}", openai_route("a")),
        ),
        1,
    ));
    world
        .routes
        .push(created(route("team-a", "a-new", &openai_route("a")), 2));
    // Older with a missing Secret: it keeps the name, so ownership does not flip when the Secret appears.
    let missing = openai_route("b").replace("provider-keys", "not-yet");
    world
        .routes
        .push(created(route("team-a", "unresolved", &missing), 1));
    world
        .routes
        .push(created(route("team-a", "b-new", &openai_route("b")), 2));
    let compiled = world.compile("default");
    assert!(
        compiled
            .outcome(Kind::LLMRoute, "team-a", "a-new")
            .published()
    );
    let b_new = compiled.outcome(Kind::LLMRoute, "team-a", "b-new");
    assert_eq!(
        b_new.accepted.as_ref().unwrap_err().reason,
        reason::CONFLICT
    );
    assert_eq!(compiled.route_ids(), vec!["team-a/a-new", "team-a/healthy"]);
}

#[test]
fn budget_references_resolve_only_to_accepted_budgets_of_the_gateway() {
    let cases = [
        ("monthly", None),
        (
            "absent",
            Some("spec.budgetRefs[0]: Budget team-a/absent not found"),
        ),
        (
            "staging",
            Some(
                "spec.budgetRefs[0]: Budget team-a/staging belongs to gateway \"staging\", not this one",
            ),
        ),
        (
            "broken",
            Some(
                "spec.budgetRefs[0]: Budget team-a/broken is not accepted (spec.timeZone: \"Nowhere\" is",
            ),
        ),
    ];
    for (budget_name, expected) in cases {
        let mut world = world();
        world.budgets.push(budget(
            "team-a",
            "staging",
            "{gateway: staging, limitUSD: 5}",
        ));
        world.budgets.push(budget(
            "team-a",
            "broken",
            "{limitUSD: 5, timeZone: Nowhere}",
        ));
        world.routes.push(route(
            "team-a",
            "r",
            &format!(
                "{}\nbudgetRefs: [{{name: {budget_name}}}]",
                openai_route("r")
            ),
        ));
        let value = key_value("k");
        world.secrets.insert(
            "team-a",
            generated_key_secret_name("k"),
            data(&[(KEY_DATA_CURRENT, &value)]),
        );
        world.keys.push(key(
            "team-a",
            "k",
            &format!("budgetRefs: [{{name: {budget_name}}}]"),
        ));
        let compiled = world.compile("default");
        for (kind, name) in [(Kind::LLMRoute, "r"), (Kind::VirtualKey, "k")] {
            let outcome = compiled.outcome(kind, "team-a", name);
            match expected {
                None => assert!(outcome.published(), "{budget_name}: {outcome:?}"),
                Some(want) => {
                    let problem = outcome.resolved_refs.as_ref().unwrap_err();
                    assert_eq!(problem.reason, reason::BUDGET_NOT_FOUND, "{budget_name}");
                    assert!(
                        problem.message.starts_with(want),
                        "{budget_name}: {}",
                        problem.message
                    );
                }
            }
        }
        let budgets: Vec<&str> = compiled
            .snapshot
            .config
            .budgets
            .iter()
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(
            budgets,
            vec!["team-a/monthly"],
            "only accepted budgets of this gateway are published"
        );
    }
}

#[test]
fn the_same_inputs_give_the_same_hash_in_any_order() {
    let synthetic = Synthetic::new("default", 30, 200);
    let first = compile(&synthetic.inputs(now()));
    let mut reversed = synthetic.clone();
    reversed.routes.reverse();
    reversed.keys.reverse();
    reversed.budgets.reverse();
    let second = compile(&reversed.inputs(now()));
    assert_eq!(first.snapshot.hash, second.snapshot.hash);
    assert_eq!(first, second);
    let ids: Vec<&str> = first.route_ids();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
}

#[test]
fn a_rotated_provider_key_changes_the_hash_and_nothing_else() {
    let before = world().compile("default");
    let mut rotated = world();
    rotated.secrets.insert(
        "team-a",
        "provider-keys",
        data(&[("openai", "sk-openai-rotated")]),
    );
    let after = rotated.compile("default");
    assert_ne!(before.snapshot.hash, after.snapshot.hash);
    assert_eq!(before.snapshot.config, after.snapshot.config);
    assert_eq!(
        after.snapshot.secrets.credentials["team-a/provider-keys/openai"].expose(),
        "sk-openai-rotated"
    );
}

#[test]
fn no_secret_value_reaches_the_config_half() {
    let mut world = world();
    let value = key_value("k");
    world.secrets.insert(
        "team-a",
        generated_key_secret_name("k"),
        data(&[(KEY_DATA_CURRENT, &value)]),
    );
    world.keys.push(key("team-a", "k", "{}"));
    let compiled = world.compile("default");
    assert_eq!(compiled.key_ids(), vec!["team-a/k"]);
    let config = serde_json::to_string(&compiled.snapshot.config).unwrap();
    for secret in [OPENAI_KEY, value.as_str(), &value[10..30]] {
        assert!(
            !config.contains(secret),
            "config carries a secret: {config}"
        );
    }
    assert!(format!("{compiled:?}").contains("<redacted>"));
    assert!(
        !format!("{compiled:?}").contains(OPENAI_KEY),
        "Debug must not show credentials"
    );
}

#[test]
fn debug_output_of_the_inputs_shows_no_secret() {
    let world = world();
    let debug = format!("{:?}", world.secrets);
    assert_eq!(
        debug,
        r#"{"team-a/provider-keys": ["anthropic", "openai"]}"#
    );
}

#[test]
fn expired_and_disabled_keys_stay_published_and_accepted() {
    let cases = [
        (
            "expiresAt: '2026-02-01T00:00:00Z'",
            Some("2026-02-01T00:00:00Z"),
            false,
        ),
        (
            "expiresAt: '2027-01-01T00:00:00Z'",
            Some("2027-01-01T00:00:00Z"),
            false,
        ),
        ("disabled: true", None, true),
    ];
    for (spec, expires_at, disabled) in cases {
        let mut world = world();
        let value = key_value(spec);
        world.secrets.insert(
            "team-a",
            generated_key_secret_name("k"),
            data(&[(KEY_DATA_CURRENT, &value)]),
        );
        world.keys.push(key("team-a", "k", spec));
        let compiled = world.compile("default");
        let outcome = compiled.outcome(Kind::VirtualKey, "team-a", "k");
        assert_eq!(
            (&outcome.accepted, &outcome.resolved_refs),
            (&Ok(()), &Ok(())),
            "{spec}"
        );
        let config = &compiled.snapshot.config.keys[0];
        assert_eq!(
            config
                .expires_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .as_deref(),
            expires_at
        );
        assert_eq!(config.disabled, disabled);
        assert_eq!(
            compiled.snapshot.secrets.key_hashes["team-a/k"][0].sha256,
            hash_key(&value)
        );
    }
}

#[test]
fn a_rotated_key_keeps_its_previous_value_for_the_grace_period() {
    let current = key_value("current");
    let previous = key_value("previous");
    // (previous-key-expires-at, previous published)
    let cases = [
        (Some("2026-03-02T12:00:00Z"), true),
        (Some("2026-03-01T12:00:00Z"), false), // exactly now: over
        (Some("2026-02-28T12:00:00Z"), false),
        (Some("tomorrow"), false),
        (None, false),
    ];
    for (expires_at, published) in cases {
        let mut world = world();
        let mut entries = vec![
            (KEY_DATA_CURRENT, current.as_str()),
            (KEY_DATA_PREVIOUS, previous.as_str()),
        ];
        entries.extend(expires_at.map(|t| (KEY_DATA_PREVIOUS_EXPIRES_AT, t)));
        world
            .secrets
            .insert("team-a", generated_key_secret_name("k"), data(&entries));
        world.keys.push(key(
            "team-a",
            "k",
            "rotation: {generation: 2, gracePeriod: 24h}",
        ));
        let compiled = world.compile("default");
        let hashes = &compiled.snapshot.secrets.key_hashes["team-a/k"];
        assert_eq!(hashes[0].sha256, hash_key(&current));
        assert_eq!(hashes[0].not_after, None);
        if published {
            assert_eq!(hashes.len(), 2, "{expires_at:?}");
            assert_eq!(hashes[1].sha256, hash_key(&previous));
            assert_eq!(
                hashes[1].not_after.map(|t| t.to_rfc3339()),
                Some("2026-03-02T12:00:00+00:00".to_owned())
            );
        } else {
            assert_eq!(hashes.len(), 1, "{expires_at:?}");
        }
        assert_eq!(compiled.snapshot.config.keys[0].prefix, current[..14]);
    }
}

#[test]
fn key_values_come_from_a_permitted_secret_of_sufficient_length() {
    let long = "byo-0123456789abcdef0123456789abcdef";
    let cases = [
        ("secretRef: {name: byo, key: value}", Ok(())),
        (
            "secretRef: {name: byo, key: short}",
            Err((
                reason::INVALID,
                "spec.secretRef: the key must be at least 32 characters long",
            )),
        ),
        (
            "secretRef: {name: byo, key: nope}",
            Err((
                reason::SECRET_KEY_NOT_FOUND,
                "spec.secretRef: Secret team-a/byo has no key \"nope\"",
            )),
        ),
        (
            "secretRef: {name: byo, key: value, namespace: team-b}",
            Err((
                reason::REF_NOT_PERMITTED,
                "spec.secretRef: Secret team-b/byo is in another namespace",
            )),
        ),
        (
            "{}",
            Err((
                reason::SECRET_NOT_FOUND,
                "generated key: Secret team-a/k-sluice-key not found yet; the operator creates it",
            )),
        ),
    ];
    for (spec, expected) in cases {
        let mut world = world();
        world.secrets.insert(
            "team-a",
            "byo",
            data(&[("value", long), ("short", "too-short")]),
        );
        world
            .secrets
            .insert("team-b", "byo", data(&[("value", long)]));
        world.keys.push(key("team-a", "k", spec));
        let compiled = world.compile("default");
        let outcome = compiled.outcome(Kind::VirtualKey, "team-a", "k");
        assert_eq!(outcome.accepted, Ok(()), "{spec}");
        match expected {
            Ok(()) => {
                assert_eq!(outcome.resolved_refs, Ok(()), "{spec}");
                assert_eq!(
                    compiled.snapshot.secrets.key_hashes["team-a/k"][0].sha256,
                    hash_key(long)
                );
                assert_eq!(
                    compiled.snapshot.config.keys[0].prefix, "byo-01234",
                    "a quarter of a bring-your-own key"
                );
            }
            Err((want_reason, want_message)) => {
                let problem = outcome.resolved_refs.as_ref().unwrap_err();
                assert_eq!(problem.reason, want_reason, "{spec}");
                assert!(
                    problem.message.starts_with(want_message),
                    "{spec}: {}",
                    problem.message
                );
                assert!(compiled.key_ids().is_empty());
            }
        }
    }
}

#[test]
fn two_keys_with_one_value_conflict_and_the_older_keeps_it() {
    let mut world = world();
    let shared = "shared-0123456789abcdef0123456789abcdef";
    world
        .secrets
        .insert("team-a", "byo", data(&[("value", shared)]));
    world.keys.push(created(
        key("team-a", "second", "secretRef: {name: byo, key: value}"),
        2,
    ));
    world.keys.push(created(
        key("team-a", "first", "secretRef: {name: byo, key: value}"),
        1,
    ));
    let compiled = world.compile("default");
    assert_eq!(compiled.key_ids(), vec!["team-a/first"]);
    let problem = compiled
        .outcome(Kind::VirtualKey, "team-a", "second")
        .resolved_refs
        .clone()
        .unwrap_err();
    assert_eq!(problem.reason, reason::INVALID);
    assert!(
        problem
            .message
            .contains("already used by VirtualKey team-a/first"),
        "{}",
        problem.message
    );
    assert!(
        !problem.message.contains(&hash_key(shared)),
        "the message must not carry the hash"
    );
}

#[test]
fn a_thousand_routes_and_ten_thousand_keys_compile_and_publish_within_object_limits() {
    let synthetic = Synthetic::new("default", 1_000, 10_000);
    let started = Instant::now();
    let compiled = compile(&synthetic.inputs(now()));
    let elapsed = started.elapsed();
    assert!(
        compiled.outcomes.values().all(|o| o.published()),
        "every synthetic resource is valid"
    );
    assert_eq!(compiled.snapshot.config.routes.len(), 1_000);
    assert_eq!(compiled.snapshot.config.keys.len(), 10_000);
    assert_eq!(compiled.snapshot.secrets.key_hashes.len(), 10_000);
    let (config, secrets) = publish_snapshot(&compiled.snapshot).expect("publish");
    for half in [&config, &secrets] {
        assert!(half.shards.iter().all(|s| s.len() <= MAX_SHARD_BYTES));
    }
    // A generous bound for an unoptimised build on a busy machine; the benchmark reports real figures.
    assert!(elapsed.as_secs() < 30, "compiling took {elapsed:?}");
}
