//! Tests of key compilation: naming, display prefixes, the grace period and one row per spec rule.

use pretty_assertions::assert_eq;

use super::*;
use crate::compile::fixtures::{data, key, now};

#[test]
fn generated_secrets_are_named_after_the_key() {
    assert_eq!(
        generated_key_secret_name("team-a-ci"),
        "team-a-ci-sluice-key"
    );
}

#[test]
fn display_prefixes_show_a_small_part_of_the_key() {
    let generated = format!("{KEY_PREFIX}AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg");
    let cases = [
        (generated.as_str(), "sk-sluice-AbCd"),
        ("0123456789abcdef0123456789abcdef", "01234567"),
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcd",
        ),
        ("ключ-ключ-ключ-ключ-ключ-ключ-кл", "ключ-клю"),
        ("", ""),
    ];
    for (key, prefix) in cases {
        assert_eq!(key_display_prefix(key), prefix, "{key}");
    }
}

#[test]
fn the_previous_key_lives_until_its_expiry() {
    let previous = "p".repeat(MIN_KEY_LENGTH);
    let cases = [
        (
            vec![
                (KEY_DATA_PREVIOUS, previous.as_str()),
                (KEY_DATA_PREVIOUS_EXPIRES_AT, "2026-03-01T13:00:00+01:00"),
            ],
            None,
        ),
        (
            vec![
                (KEY_DATA_PREVIOUS, previous.as_str()),
                (KEY_DATA_PREVIOUS_EXPIRES_AT, "2026-03-01T12:00:01Z"),
            ],
            Some("2026-03-01T12:00:01+00:00"),
        ),
        (
            vec![
                (KEY_DATA_PREVIOUS, "short"),
                (KEY_DATA_PREVIOUS_EXPIRES_AT, "2027-01-01T00:00:00Z"),
            ],
            None,
        ),
        (
            vec![(KEY_DATA_PREVIOUS_EXPIRES_AT, "2027-01-01T00:00:00Z")],
            None,
        ),
        (vec![(KEY_DATA_PREVIOUS, previous.as_str())], None),
    ];
    for (entries, expected) in cases {
        let got =
            previous_key(&data(&entries), now()).map(|(key, until)| (key, until.to_rfc3339()));
        assert_eq!(
            got.as_ref().map(|(_, until)| until.as_str()),
            expected,
            "{entries:?}"
        );
        if let Some((key, _)) = got {
            assert_eq!(key, previous);
        }
    }
}

#[test]
fn each_invalid_key_spec_names_its_field() {
    let long_name = "k".repeat(250);
    let cases = [
        ("k", "models: ['']", "spec.models[0]: must not be empty"),
        (
            "k",
            "allowedRegions: ['']",
            "spec.allowedRegions[0]: must not be empty",
        ),
        (
            "k",
            "rateLimit: {tokensPerMinute: 0}",
            "spec.rateLimit.tokensPerMinute: must be at least 1, got 0",
        ),
        (
            "k",
            "rotation: {gracePeriod: 1d}",
            "spec.rotation.gracePeriod: invalid duration \"1d\"",
        ),
        (
            "k",
            "rotation: {generation: -1}",
            "spec.rotation.generation: must be at least 0, got -1",
        ),
        (
            "k",
            "{secretRef: {name: s, key: k}, rotation: {generation: 1}}",
            "spec.rotation: applies to generated keys",
        ),
        (
            "k",
            "deniedModels: ['']",
            "spec.deniedModels[0]: must not be empty",
        ),
        (
            "k",
            "guardrails: {maxTokens: 0}",
            "spec.guardrails.maxTokens: must be between 1 and 4294967295, got 0",
        ),
        (
            "k",
            "guardrails: {maxPromptTokens: 0}",
            "spec.guardrails.maxPromptTokens: must be at least 1, got 0",
        ),
        (
            long_name.as_str(),
            "{}",
            "metadata.name: is too long to name the generated Secret; use at most 242 characters",
        ),
    ];
    for (name, spec, expected) in cases {
        let key = key("team-a", name, spec);
        let problem = compile_spec(&ObjectRef::of(Kind::VirtualKey, &key.metadata), &key.spec)
            .expect_err(spec);
        assert_eq!(problem.reason, reason::INVALID, "{spec}");
        assert!(
            problem.message.starts_with(expected),
            "{spec}\n  got:  {}\n  want: {expected}",
            problem.message
        );
    }
}

#[test]
fn a_valid_key_spec_keeps_its_scopes() {
    let spec = "{models: [chat, chat, ' embed'], allowedRegions: [eu], rateLimit: {requestsPerMinute: 60}, budgetRefs: [{name: b}]}";
    let key = key("team-a", "ci", spec);
    let config =
        compile_spec(&ObjectRef::of(Kind::VirtualKey, &key.metadata), &key.spec).expect("valid");
    assert_eq!(config.id, "team-a/ci");
    assert_eq!(config.models, vec!["chat", "embed"]);
    assert_eq!(config.allowed_regions, vec!["eu"]);
    assert_eq!(config.budgets, vec!["team-a/b"]);
    assert_eq!(
        config.rate_limit.and_then(|r| r.requests_per_minute),
        Some(60)
    );
    assert_eq!((config.expires_at, config.disabled), (None, false));
}

#[test]
fn deny_lists_and_caps_compile_to_the_key() {
    let spec = "{deniedModels: [support, ' support'], guardrails: {maxTokens: 256, maxPromptTokens: 4000}}";
    let key = key("team-a", "ci", spec);
    let config =
        compile_spec(&ObjectRef::of(Kind::VirtualKey, &key.metadata), &key.spec).expect("valid");
    assert_eq!(config.denied_models, vec!["support"]);
    assert_eq!(
        (config.max_tokens, config.max_prompt_tokens),
        (Some(256), Some(4000))
    );
}
