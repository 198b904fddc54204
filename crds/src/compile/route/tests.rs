//! Tests of route compilation: defaults, provider endpoints, pricing, and one row per spec rule.

use pretty_assertions::assert_eq;

use super::*;
use crate::compile::fixtures::route;

fn compile_one(spec: &str) -> Result<RouteConfig, Problem> {
    let route = route("team-a", "chat", spec);
    compile_spec(&ObjectRef::of(Kind::LLMRoute, &route.metadata), &route.spec)
}

const OPENAI: &str =
    "{name: openai, provider: openai, model: gpt-4o, credentialsRef: {name: keys, key: openai}}";

#[test]
fn a_minimal_route_gets_every_default() {
    let config = compile_one(&format!("model: chat\nbackends: [{OPENAI}]")).expect("valid");
    assert_eq!(config.id, "team-a/chat");
    assert_eq!(config.strategy, RoutingStrategy::PriorityFailover);
    assert_eq!(
        config.timeouts,
        TimeoutConfig {
            connect_ms: 5_000,
            first_byte_ms: 60_000,
            idle_ms: 30_000,
            total_ms: 600_000
        }
    );
    assert_eq!(
        (
            config.retry.attempts,
            config.retry.initial_backoff_ms,
            config.retry.max_backoff_ms
        ),
        (3, 50, 2_000)
    );
    assert_eq!(
        (config.retry.retry_after_cap_ms, config.retry.budget_percent),
        (10_000, 20)
    );
    assert_eq!(config.retry.retry_on.len(), 5);
    assert_eq!(
        config.circuit_breaker,
        Some(BreakerConfig {
            consecutive_failures: 5,
            error_rate_percent: 50,
            min_requests: 20,
            window_ms: 30_000,
            open_for_ms: 15_000
        })
    );
    assert_eq!(
        (
            config.hedge,
            config.cache,
            config.rate_limit,
            config.pii.is_none()
        ),
        (None, None, None, true)
    );
    let backend = &config.backends[0];
    assert_eq!(backend.endpoint, "https://api.openai.com/v1");
    assert_eq!(backend.credential.as_deref(), Some("team-a/keys/openai"));
    assert_eq!((backend.weight, backend.priority), (1, 0));
    assert_eq!(
        backend.pricing,
        crate::pricing::builtin(Provider::Openai, "gpt-4o")
    );
}

#[test]
fn every_policy_compiles_to_its_runtime_form() {
    let spec = r#"
model: chat
aliases: [gpt-4o, chat, gpt-4o, " fast "]
strategy: weighted
backends:
  - {name: openai, provider: openai, model: gpt-4o, credentialsRef: {name: keys, key: openai}, weight: 3, region: eu}
  - name: azure
    provider: azure-openai
    model: gpt-4o
    endpoint: https://acme.openai.azure.com/
    azure: {deployment: prod}
    credentialsRef: {name: keys, key: azure}
    weight: 0
    priority: 2
    contextWindow: 128000
retry: {attempts: 2, retryOn: [5xx, "429", 5xx], initialBackoff: 100ms, maxBackoff: 1s, retryAfterCap: 3s, budgetPercent: 10}
timeouts: {connect: 1s, firstByte: 10s, idle: 5s, total: 1m30s}
circuitBreaker: {disabled: true}
hedge: {delay: 250ms, maxPercent: 5}
cache: {ttl: 10m, scope: shared, maxEntries: 500}
rateLimit: {requestsPerMinute: 100}
budgetRefs: [{name: monthly}, {name: team}, {name: monthly}]
defaults: {temperature: 0.2}
overrides: {maxTokens: 1024}
systemPromptPrefix: Be brief.
piiRedaction: {mode: block, customPatterns: [{name: ticket, regex: 'TICKET-\d+'}]}
allowedRegions: [eu]
"#;
    let config = compile_one(spec).expect("valid");
    assert_eq!(config.aliases, vec!["gpt-4o", "fast"]);
    assert_eq!(config.strategy, RoutingStrategy::Weighted);
    assert_eq!(
        config.retry.retry_on,
        vec![
            crate::v1alpha1::RetryOn::ServerError,
            crate::v1alpha1::RetryOn::RateLimited
        ]
    );
    assert_eq!(config.timeouts.total_ms, 90_000);
    assert_eq!(config.circuit_breaker, None);
    assert_eq!(
        config.hedge,
        Some(HedgeConfig {
            delay: HedgeDelay::Fixed { ms: 250 },
            max_percent: 5
        })
    );
    assert_eq!(
        config.cache.map(|c| (c.ttl_ms, c.max_entries)),
        Some((600_000, 500))
    );
    assert_eq!(
        config.rate_limit.and_then(|r| r.requests_per_minute),
        Some(100)
    );
    assert_eq!(config.budgets, vec!["team-a/monthly", "team-a/team"]);
    assert_eq!(
        (config.defaults.temperature, config.overrides.max_tokens),
        (Some(0.2), Some(1024))
    );
    assert_eq!(config.system_prompt_prefix.as_deref(), Some("Be brief."));
    let pii = config.pii.expect("pii");
    assert_eq!(
        pii.entities,
        ALL_PII_ENTITIES.to_vec(),
        "no entities listed means every detector"
    );
    assert_eq!(pii.custom_patterns.len(), 1);
    let azure = &config.backends[1];
    assert_eq!(
        azure.endpoint, "https://acme.openai.azure.com",
        "trailing slash dropped"
    );
    assert_eq!(
        azure.azure.as_ref().map(|a| a.api_version.as_str()),
        Some("2024-10-21")
    );
    assert_eq!(
        (azure.weight, azure.priority, azure.context_window),
        (0, 2, Some(128_000))
    );
}

#[test]
fn pricing_comes_from_the_route_or_the_built_in_table() {
    let cases = [
        (
            "{name: a, provider: openai, model: gpt-4o-mini, credentialsRef: {name: k, key: k}}",
            Some((0.15, 0.60, 0.075)),
        ),
        (
            "{name: a, provider: openai, model: gpt-4o-mini, credentialsRef: {name: k, key: k}, pricing: {inputPerMillion: 1, outputPerMillion: 2, cachedInputPerMillion: 0.5}}",
            Some((1.0, 2.0, 0.5)),
        ),
        (
            "{name: a, provider: openai-compatible, model: llama, endpoint: 'http://vllm/v1', pricing: {inputPerMillion: 0.05, outputPerMillion: 0.1}}",
            Some((0.05, 0.1, 0.05)),
        ),
        (
            "{name: a, provider: openai-compatible, model: gpt-4o, endpoint: 'http://vllm/v1'}",
            None,
        ),
        (
            "{name: a, provider: anthropic, model: claude-sonnet-4-5-20250929, credentialsRef: {name: k, key: k}}",
            Some((3.0, 15.0, 0.3)),
        ),
        (
            "{name: a, provider: gemini, model: my-tuned-gemini, credentialsRef: {name: k, key: k}}",
            None,
        ),
    ];
    for (backend, expected) in cases {
        let config = compile_one(&format!("model: m\nbackends: [{backend}]")).expect(backend);
        let got = config.backends[0].pricing.map(|p| {
            (
                p.input_per_million,
                p.output_per_million,
                p.cached_input_per_million,
            )
        });
        assert_eq!(got, expected, "{backend}");
    }
}

#[test]
fn provider_defaults_fill_the_endpoint() {
    let cases = [
        ("anthropic", "https://api.anthropic.com"),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ("openai", "https://api.openai.com/v1"),
    ];
    for (provider, endpoint) in cases {
        let spec = format!(
            "model: m\nbackends: [{{name: a, provider: {provider}, model: x, credentialsRef: {{name: k, key: k}}}}]"
        );
        assert_eq!(
            compile_one(&spec).expect(provider).backends[0].endpoint,
            endpoint
        );
    }
}

#[test]
fn each_invalid_spec_names_its_field() {
    let b = OPENAI;
    let cases: Vec<(String, &str)> = vec![
        (format!("model: m\nbackends: [{b}]\ntimeouts: {{connect: 5x}}"), "spec.timeouts.connect: invalid duration \"5x\""),
        (format!("model: m\nbackends: [{b}]\ntimeouts: {{firstByte: 1h, total: 1m}}"), "spec.timeouts.firstByte: must not exceed total (1m)"),
        (format!("model: m\nbackends: [{b}]\ntimeouts: {{idle: 0s}}"), "spec.timeouts.idle: must be greater than zero"),
        (format!("model: m\nbackends: [{b}]\nretry: {{maxBackoff: fast}}"), "spec.retry.maxBackoff: invalid duration \"fast\""),
        (format!("model: m\nbackends: [{b}]\nretry: {{initialBackoff: 5s}}"), "spec.retry.initialBackoff: must not exceed maxBackoff (2s)"),
        (format!("model: m\nbackends: [{b}]\nretry: {{attempts: 0}}"), "spec.retry.attempts: must be between 1 and 10, got 0"),
        (format!("model: m\nbackends: [{b}]\nretry: {{budgetPercent: 101}}"), "spec.retry.budgetPercent: must be between 0 and 100"),
        (format!("model: m\nbackends: [{b}]\ncircuitBreaker: {{disabled: true, openFor: soon}}"), "spec.circuitBreaker.openFor: invalid duration"),
        (format!("model: m\nbackends: [{b}]\ncircuitBreaker: {{errorRatePercent: 0}}"), "spec.circuitBreaker.errorRatePercent: must be between 1 and 100"),
        (format!("model: m\nbackends: [{b}]\nhedge: {{delay: p99}}"), "spec.hedge.delay: invalid duration \"p99\""),
        (format!("model: m\nbackends: [{b}]\ncache: {{ttl: 0s}}"), "spec.cache.ttl: must be greater than zero"),
        (format!("model: m\nbackends: [{b}]\ncache: {{maxEntries: 0}}"), "spec.cache.maxEntries: must be between 1 and 10000000"),
        (format!("model: m\nbackends: [{b}]\nrateLimit: {{}}"), "spec.rateLimit: needs requestsPerMinute, tokensPerMinute or both"),
        (format!("model: m\nbackends: [{b}]\ndefaults: {{temperature: 3}}"), "spec.defaults.temperature: must be between 0 and 2"),
        (format!("model: m\nbackends: [{b}]\noverrides: {{topP: 1.5}}"), "spec.overrides.topP: must be between 0 and 1"),
        (format!("model: m\nbackends: [{b}]\npiiRedaction: {{customPatterns: [{{name: x, regex: '('}}]}}"), "spec.piiRedaction.customPatterns[0].regex: regex parse error"),
        (format!("model: m\nbackends: [{b}]\npiiRedaction: {{customPatterns: [{{name: 'a b', regex: x}}]}}"), "spec.piiRedaction.customPatterns[0].name: must be 1-63"),
        (format!("model: m\nbackends: [{b}]\nallowedRegions: [eu]"), "spec.allowedRegions: no backend has a region in this list"),
        (format!("model: ''\nbackends: [{b}]"), "spec.model: must not be empty"),
        (format!("model: m\naliases: ['']\nbackends: [{b}]"), "spec.aliases[0]: must not be empty"),
        ("model: m\nbackends: []".into(), "spec.backends: needs at least one backend"),
        (format!("model: m\nbackends: [{b}, {b}]"), "spec.backends[1].name: \"openai\" is already the name of backends[0]"),
        ("model: m\nbackends: [{name: Open_AI, provider: openai-compatible, model: x, endpoint: 'http://h'}]".into(), "spec.backends[0].name: \"Open_AI\" must be a lowercase DNS label"),
        ("model: m\nbackends: [{name: a, provider: anthropic, model: x}]".into(), "spec.backends[0].credentialsRef: provider anthropic needs credentialsRef"),
        ("model: m\nbackends: [{name: a, provider: openai-compatible, model: x}]".into(), "spec.backends[0].endpoint: provider openai-compatible needs an endpoint"),
        ("model: m\nbackends: [{name: a, provider: openai, model: x, endpoint: 'api.openai.com', credentialsRef: {name: k, key: k}}]".into(), "spec.backends[0].endpoint: must start with https:// or http://"),
        ("model: m\nbackends: [{name: a, provider: azure-openai, model: x, endpoint: 'https://a.openai.azure.com', credentialsRef: {name: k, key: k}}]".into(), "spec.backends[0].azure: provider azure-openai needs azure.deployment"),
        ("model: m\nbackends: [{name: a, provider: azure-openai, model: x, endpoint: 'https://a', azure: {deployment: d, apiVersion: latest}, credentialsRef: {name: k, key: k}}]".into(), "spec.backends[0].azure.apiVersion: \"latest\" must look like"),
        ("model: m\nbackends: [{name: a, provider: openai, model: x, azure: {deployment: d}, credentialsRef: {name: k, key: k}}]".into(), "spec.backends[0].azure: applies only to provider azure-openai, not openai"),
        ("model: m\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h', weight: -1}]".into(), "spec.backends[0].weight: must be between 0 and 1000000, got -1"),
        ("model: m\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h', priority: 1001}]".into(), "spec.backends[0].priority: must be between 0 and 1000"),
        ("model: m\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h', contextWindow: 0}]".into(), "spec.backends[0].contextWindow: must be at least 1"),
        ("model: m\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h', pricing: {inputPerMillion: -1, outputPerMillion: 1}}]".into(), "spec.backends[0].pricing.inputPerMillion: must be a number of at least 0, got -1"),
        ("model: m\nstrategy: weighted\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h', weight: 0}]".into(), "spec.backends: strategy weighted needs at least one backend with a weight above 0"),
        ("model: m\nstrategy: lowest-cost\nbackends: [{name: a, provider: openai-compatible, model: x, endpoint: 'http://h'}]".into(), "spec.backends[0].pricing: strategy lowest-cost needs a price and the built-in table has none for openai-compatible model \"x\""),
        (format!("model: m\nbackends: [{b}]\nguardrails: {{maxTokens: 0}}"), "spec.guardrails.maxTokens: must be between 1 and 4294967295, got 0"),
        (format!("model: m\nbackends: [{b}]\nguardrails: {{maxPromptTokens: 0}}"), "spec.guardrails.maxPromptTokens: must be at least 1"),
        (format!("model: m\nbackends: [{b}]\nguardrails: {{blockedPatterns: [{{name: x, regex: '['}}]}}"), "spec.guardrails.blockedPatterns[0].regex: regex parse error"),
        (format!("model: m\nbackends: [{b}]\nguardrails: {{blockedPatterns: [{{name: x, regex: a}}, {{name: x, regex: b}}]}}"), "spec.guardrails.blockedPatterns[1].name: \"x\" is already the name of blockedPatterns[0]"),
        (format!("model: m\nbackends: [{b}]\nstickiness: {{}}"), "spec.stickiness: applies to the weighted strategy"),
        (format!("model: m\nstrategy: weighted\nbackends: [{b}]\nstickiness: {{by: header}}"), "spec.stickiness.header: stickiness by header needs the header name"),
        (format!("model: m\nstrategy: weighted\nbackends: [{b}]\nstickiness: {{by: header, header: 'x user'}}"), "spec.stickiness.header: \"x user\" is not a valid HTTP header name"),
        (format!("model: m\nbackends: [{b}]\nshadow: {{percent: 5, backend: {b}}}"), "spec.shadow.backend.name: \"openai\" is already the name of a route backend"),
        (format!("model: m\nbackends: [{b}]\nshadow: {{percent: 0, backend: {{name: s, provider: openai-compatible, model: x, endpoint: 'http://h'}}}}"), "spec.shadow.percent: must be between 1 and 100, got 0"),
        (format!("model: m\nbackends: [{b}]\nshadow: {{percent: 5, backend: {{name: s, provider: anthropic, model: x}}}}"), "spec.shadow.backend.credentialsRef: provider anthropic needs credentialsRef"),
        (format!("model: m\nbackends: [{b}]\ncache: {{semantic: {{embeddingModel: e, threshold: 0.2}}}}"), "spec.cache.semantic.threshold: must be between 0.5 and 1, got 0.2"),
        (format!("model: m\nbackends: [{b}]\ncache: {{semantic: {{embeddingModel: e, maxEntries: 0}}}}"), "spec.cache.semantic.maxEntries: must be between 1 and 100000, got 0"),
        (format!("model: m\nbackends: [{b}]\ncache: {{semantic: {{embeddingModel: ' '}}}}"), "spec.cache.semantic.embeddingModel: must not be empty"),
    ];
    for (spec, expected) in cases {
        let problem = compile_one(&spec).expect_err(&spec);
        assert_eq!(problem.reason, reason::INVALID, "{spec}");
        assert!(
            problem.message.starts_with(expected),
            "{spec}\n  got:  {}\n  want: {expected}",
            problem.message
        );
    }
}

#[test]
fn lowest_cost_accepts_prices_from_the_built_in_table() {
    let spec = format!("model: m\nstrategy: lowest-cost\nbackends: [{OPENAI}]");
    assert!(compile_one(&spec).is_ok());
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec = "model: m\nbackends: [{name: a, provider: anthropic, model: x}]\ntimeouts: {connect: 1y, idle: 2y}";
    let message = compile_one(spec).unwrap_err().message;
    for field in [
        "spec.backends[0].credentialsRef",
        "spec.timeouts.connect",
        "spec.timeouts.idle",
    ] {
        assert!(message.contains(field), "{field} missing from {message}");
    }
}

#[test]
fn hedge_delay_is_fixed_or_the_observed_p95() {
    let spec = format!("model: m\nbackends: [{OPENAI}]\nhedge: {{}}");
    assert_eq!(
        compile_one(&spec).unwrap().hedge,
        Some(HedgeConfig {
            delay: HedgeDelay::P95,
            max_percent: 10
        })
    );
}

#[test]
fn guardrails_stickiness_and_shadow_compile_to_their_runtime_form() {
    let spec = format!(
        "model: m\nstrategy: weighted\nbackends: [{OPENAI}]\n\
         guardrails: {{maxPromptTokens: 8000, maxTokens: 512, blockedPatterns: [{{name: code, regex: 'secret'}}]}}\n\
         stickiness: {{by: header, header: X-User-Id}}\n\
         shadow: {{percent: 10, backend: {{name: candidate, provider: openai-compatible, model: llama, endpoint: 'http://vllm:8000/v1', region: eu}}}}"
    );
    let config = compile_one(&spec).unwrap();
    assert_eq!(
        config.guardrails,
        Some(GuardrailsConfig {
            max_prompt_tokens: Some(8000),
            max_tokens: Some(512),
            blocked_patterns: vec![PiiPattern {
                name: "code".into(),
                regex: "secret".into()
            }],
        })
    );
    assert_eq!(
        config.stickiness,
        Some(StickinessConfig {
            by: StickyBy::Header,
            header: Some("x-user-id".into()),
        })
    );
    let shadow = config.shadow.unwrap();
    assert_eq!(shadow.percent, 10);
    assert_eq!(shadow.backend.name, "candidate");
    assert_eq!(shadow.backend.endpoint, "http://vllm:8000/v1");
    assert_eq!(shadow.backend.region.as_deref(), Some("eu"));
    assert!(
        config.backends.iter().all(|b| b.name != "candidate"),
        "never a candidate"
    );

    let semantic = compile_one(&format!(
        "model: m\nbackends: [{OPENAI}]\ncache: {{semantic: {{embeddingModel: embed}}}}"
    ))
    .unwrap();
    assert_eq!(
        semantic.semantic_cache,
        Some(SemanticCacheConfig {
            embedding_model: "embed".into(),
            threshold: 0.95,
            max_entries: 1_000,
        })
    );

    let plain = compile_one(&format!("model: m\nbackends: [{OPENAI}]")).unwrap();
    assert_eq!(
        (plain.guardrails, plain.stickiness, plain.shadow.is_none()),
        (None, None, true)
    );
    assert_eq!(plain.semantic_cache, None);
}
