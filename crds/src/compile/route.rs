//! LLMRoute → [`RouteConfig`]: spec validation with defaults filled in, credential resolution, and
//! the model-name conflicts between routes of one gateway.

use std::collections::BTreeMap;

use regex::RegexBuilder;

use super::common::{budget_ids, rate_limit};
use super::conflicts::{self, Claim};
use super::problems::{Problems, dedup};
use super::refs::{BudgetDirectory, secret_value};
use super::{Inputs, Kind, ObjectRef, Outcome, Problem, age_key, endpoint};
use crate::conditions::reason;
use crate::config::{
    BackendConfig, BreakerConfig, CacheConfig, GuardrailsConfig, HedgeConfig, HedgeDelay,
    PiiConfig, PriceConfig, RetryConfig, RouteConfig, SecretValue, SemanticCacheConfig,
    ShadowConfig, StickinessConfig, TimeoutConfig, credential_id,
};
use crate::v1alpha1::{
    AzureSettings, Backend, CachePolicy, CircuitBreaker, Guardrails, HedgePolicy, LLMRoute,
    LLMRouteSpec, PiiEntity, PiiPattern, PiiRedaction, Pricing, Provider, RequestParameters,
    RetryPolicy, RoutingStrategy, SemanticCachePolicy, ShadowPolicy, Stickiness, StickyBy,
    Timeouts,
};

/// Longest model name or alias, as the CRD schema allows.
const MAX_MODEL_NAME: usize = 256;
/// Largest compiled PII pattern: generous for real patterns, small enough that one route cannot make
/// every gateway allocate without bound.
const MAX_PII_REGEX_BYTES: usize = 1 << 20;

/// One route as compiled on its own, before model-name conflicts are decided.
struct Candidate<'a> {
    route: &'a LLMRoute,
    object: ObjectRef,
    config: Result<RouteConfig, Problem>,
    credentials: Result<Vec<(String, String)>, Problem>,
}

/// Compiles the gateway's routes, records an outcome for each, and adds the credentials of the
/// published ones to `credentials`. Returns the published routes sorted by id.
pub(super) fn compile_all(
    inputs: &Inputs,
    budgets: &BudgetDirectory,
    outcomes: &mut BTreeMap<ObjectRef, Outcome>,
    credentials: &mut BTreeMap<String, SecretValue>,
) -> Vec<RouteConfig> {
    let candidates: Vec<Candidate> = inputs
        .routes
        .iter()
        .filter(|route| route.spec.gateway == inputs.gateway)
        .map(|route| {
            let object = ObjectRef::of(Kind::LLMRoute, &route.metadata);
            Candidate {
                config: compile_spec(&object, &route.spec),
                credentials: resolve_refs(inputs, budgets, &object.namespace, &route.spec),
                route,
                object,
            }
        })
        .collect();
    let conflicts = model_conflicts(&candidates);

    let mut routes = Vec::new();
    for (i, entry) in candidates.into_iter().enumerate() {
        let config = match conflicts.get(&i) {
            Some(problem) => Err(problem.clone()),
            None => entry.config,
        };
        let outcome = Outcome {
            accepted: config.as_ref().map(|_| ()).map_err(Clone::clone),
            resolved_refs: entry.credentials.as_ref().map(|_| ()).map_err(Clone::clone),
        };
        if let (Ok(config), Ok(values)) = (config, entry.credentials) {
            credentials.extend(
                values
                    .into_iter()
                    .map(|(id, value)| (id, SecretValue::new(value))),
            );
            routes.push(config);
        }
        outcomes.insert(entry.object, outcome);
    }
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    routes
}

/// `ModelConflict` problems, by index, for spec-valid routes that claim a name an older route holds.
fn model_conflicts(candidates: &[Candidate]) -> BTreeMap<usize, Problem> {
    let valid: Vec<(usize, &RouteConfig)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.config.as_ref().ok().map(|config| (i, config)))
        .collect();
    let claims: Vec<Claim<_>> = valid
        .iter()
        .map(|&(i, config)| Claim {
            age: age_key(&candidates[i].route.metadata),
            names: std::iter::once(config.model.as_str())
                .chain(config.aliases.iter().map(String::as_str))
                .collect(),
        })
        .collect();
    conflicts::resolve(&claims)
        .into_iter()
        .map(|(claim, lost)| {
            let (loser, winner) = (valid[claim], valid[lost.winner]);
            let field = if loser.1.model == lost.name { "spec.model" } else { "spec.aliases" };
            let problem = Problem {
                reason: reason::CONFLICT,
                message: format!(
                    "{field}: model name {:?} is already served by {}, which is older; rename one of them",
                    lost.name, candidates[winner.0].object
                ),
            };
            (loser.0, problem)
        })
        .collect()
}

/// The spec as a [`RouteConfig`], every problem reported at once.
fn compile_spec(object: &ObjectRef, spec: &LLMRouteSpec) -> Result<RouteConfig, Problem> {
    let mut problems = Problems::new();
    let model = spec.model.trim();
    problems.name("spec.model", &spec.model, MAX_MODEL_NAME);
    problems.names("spec.aliases", &spec.aliases, MAX_MODEL_NAME);
    let aliases = dedup(
        spec.aliases
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| a != model),
    );

    if spec.backends.is_empty() {
        problems.invalid("spec.backends", "needs at least one backend");
    }
    let backends: Vec<BackendConfig> = spec
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| backend(&object.namespace, i, b, &mut problems))
        .collect();
    check_backend_names(&spec.backends, &mut problems);
    check_strategy(spec.strategy, &backends, &mut problems);
    problems.names("spec.allowedRegions", &spec.allowed_regions, 63);
    check_regions_reachable(&spec.allowed_regions, &backends, &mut problems);

    let config = RouteConfig {
        id: object.id(),
        model: model.to_owned(),
        aliases,
        strategy: spec.strategy,
        retry: retry(&spec.retry, &mut problems),
        timeouts: timeouts(&spec.timeouts, &mut problems),
        circuit_breaker: breaker(&spec.circuit_breaker, &mut problems),
        hedge: spec
            .hedge
            .as_ref()
            .map(|hedge| hedge_policy(hedge, &mut problems)),
        cache: spec
            .cache
            .as_ref()
            .map(|cache| cache_policy(cache, &mut problems)),
        rate_limit: spec
            .rate_limit
            .as_ref()
            .map(|limit| rate_limit("spec.rateLimit", limit, &mut problems)),
        budgets: budget_ids(&object.namespace, &spec.budget_refs),
        defaults: parameters("spec.defaults", spec.defaults.as_ref(), &mut problems),
        overrides: parameters("spec.overrides", spec.overrides.as_ref(), &mut problems),
        system_prompt_prefix: spec.system_prompt_prefix.clone().filter(|p| !p.is_empty()),
        pii: spec
            .pii_redaction
            .as_ref()
            .map(|pii| pii_policy(pii, &mut problems)),
        allowed_regions: dedup(spec.allowed_regions.iter().cloned()),
        guardrails: spec
            .guardrails
            .as_ref()
            .map(|guardrails| guardrails_policy(guardrails, &mut problems)),
        stickiness: spec
            .stickiness
            .as_ref()
            .map(|sticky| stickiness(spec.strategy, sticky, &mut problems)),
        semantic_cache: spec
            .cache
            .as_ref()
            .and_then(|cache| cache.semantic.as_ref())
            .map(|semantic| semantic_cache(semantic, &mut problems)),
        shadow: spec
            .shadow
            .as_ref()
            .map(|shadow| shadow_policy(&object.namespace, shadow, &spec.backends, &mut problems)),
        backends,
    };
    problems.into_result().map(|()| config)
}

/// Credential values of every backend (by credential id) after checking the Budget references.
fn resolve_refs(
    inputs: &Inputs,
    budgets: &BudgetDirectory,
    namespace: &str,
    spec: &LLMRouteSpec,
) -> Result<Vec<(String, String)>, Problem> {
    let mut problems = Problems::new();
    let mut values = Vec::new();
    for (i, backend) in spec.backends.iter().enumerate() {
        let Some(reference) = &backend.credentials_ref else {
            continue;
        };
        let field = format!("spec.backends[{i}].credentialsRef");
        match secret_value(inputs.secrets, namespace, &field, reference) {
            Ok(value) => values.push((
                credential_id(namespace, &reference.name, &reference.key),
                value,
            )),
            Err(problem) => problems.push(problem.reason, problem.message),
        }
    }
    if let Some(reference) = spec
        .shadow
        .as_ref()
        .and_then(|shadow| shadow.backend.credentials_ref.as_ref())
    {
        match secret_value(
            inputs.secrets,
            namespace,
            "spec.shadow.backend.credentialsRef",
            reference,
        ) {
            Ok(value) => values.push((
                credential_id(namespace, &reference.name, &reference.key),
                value,
            )),
            Err(problem) => problems.push(problem.reason, problem.message),
        }
    }
    budgets.check(namespace, &spec.budget_refs, &mut problems);
    problems.into_result().map(|()| values)
}

fn backend(namespace: &str, i: usize, backend: &Backend, problems: &mut Problems) -> BackendConfig {
    backend_at(namespace, &format!("spec.backends[{i}]"), backend, problems)
}

/// A backend declared at `path` (a route backend or the shadow backend).
fn backend_at(
    namespace: &str,
    path: &str,
    backend: &Backend,
    problems: &mut Problems,
) -> BackendConfig {
    let field = |name: &str| format!("{path}.{name}");
    if !is_dns_label(&backend.name) {
        problems.invalid(
            field("name"),
            format!(
                "{:?} must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)",
                backend.name
            ),
        );
    }
    problems.name(field("model"), &backend.model, MAX_MODEL_NAME);
    let credential = match (&backend.credentials_ref, backend.provider) {
        (Some(reference), _) => Some(credential_id(namespace, &reference.name, &reference.key)),
        (None, Provider::OpenaiCompatible) => None,
        (None, provider) => {
            problems.invalid(
                field("credentialsRef"),
                format!(
                    "provider {} needs credentialsRef naming the Secret key that holds its API key",
                    provider.as_str()
                ),
            );
            None
        }
    };
    if let Some(region) = &backend.region {
        problems.name(field("region"), region, 63);
    }
    BackendConfig {
        name: backend.name.clone(),
        provider: backend.provider,
        model: backend.model.trim().to_owned(),
        endpoint: endpoint::resolve(
            &field("endpoint"),
            backend.provider,
            backend.endpoint.as_deref(),
            problems,
        ),
        credential,
        weight: problems.ranged_u32(field("weight"), backend.weight.into(), 0, 1_000_000),
        priority: problems.ranged_u32(field("priority"), backend.priority.into(), 0, 1_000),
        region: backend.region.clone(),
        context_window: backend
            .context_window
            .map(|n| problems.at_least_u64(field("contextWindow"), n, 1)),
        pricing: match &backend.pricing {
            Some(pricing) => Some(price(&field("pricing"), pricing, problems)),
            None => crate::pricing::builtin(backend.provider, backend.model.trim()),
        },
        azure: azure(&field("azure"), backend, problems),
    }
}

/// Azure settings are required for azure-openai and refused elsewhere.
fn azure(field: &str, backend: &Backend, problems: &mut Problems) -> Option<AzureSettings> {
    match (&backend.azure, backend.provider) {
        (Some(settings), Provider::AzureOpenai) => {
            problems.name(format_args!("{field}.deployment"), &settings.deployment, 64);
            if !is_api_version(&settings.api_version) {
                problems.invalid(
                    format_args!("{field}.apiVersion"),
                    format!(
                        "{:?} must look like 2024-10-21 or 2025-04-01-preview",
                        settings.api_version
                    ),
                );
            }
            Some(settings.clone())
        }
        (None, Provider::AzureOpenai) => {
            problems.invalid(field, "provider azure-openai needs azure.deployment");
            None
        }
        (Some(_), provider) => {
            problems.invalid(
                field,
                format!(
                    "applies only to provider azure-openai, not {}",
                    provider.as_str()
                ),
            );
            None
        }
        (None, _) => None,
    }
}

/// A route's own price; cached input defaults to the input price.
fn price(field: &str, pricing: &Pricing, problems: &mut Problems) -> PriceConfig {
    let cached = pricing
        .cached_input_per_million
        .unwrap_or(pricing.input_per_million);
    for (name, value) in [
        ("inputPerMillion", pricing.input_per_million),
        ("outputPerMillion", pricing.output_per_million),
        ("cachedInputPerMillion", cached),
    ] {
        problems.non_negative_f64(format_args!("{field}.{name}"), value);
    }
    PriceConfig {
        input_per_million: pricing.input_per_million,
        output_per_million: pricing.output_per_million,
        cached_input_per_million: cached,
    }
}

fn check_backend_names(backends: &[Backend], problems: &mut Problems) {
    for (i, backend) in backends.iter().enumerate() {
        if let Some(first) = backends[..i]
            .iter()
            .position(|other| other.name == backend.name)
        {
            problems.invalid(
                format_args!("spec.backends[{i}].name"),
                format!(
                    "{:?} is already the name of backends[{first}]",
                    backend.name
                ),
            );
        }
    }
}

fn check_strategy(strategy: RoutingStrategy, backends: &[BackendConfig], problems: &mut Problems) {
    match strategy {
        RoutingStrategy::Weighted
            if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) =>
        {
            problems.invalid(
                "spec.backends",
                "strategy weighted needs at least one backend with a weight above 0",
            );
        }
        RoutingStrategy::LowestCost => {
            for (i, backend) in backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.pricing.is_none())
            {
                problems.invalid(
                    format_args!("spec.backends[{i}].pricing"),
                    format!(
                        "strategy lowest-cost needs a price and the built-in table has none for {} model {:?}",
                        backend.provider.as_str(),
                        backend.model
                    ),
                );
            }
        }
        _ => {}
    }
}

/// A route restricted to regions must have at least one backend it may use.
fn check_regions_reachable(
    allowed: &[String],
    backends: &[BackendConfig],
    problems: &mut Problems,
) {
    let reachable = |b: &BackendConfig| b.region.as_ref().is_some_and(|r| allowed.contains(r));
    if !allowed.is_empty() && !backends.is_empty() && !backends.iter().any(reachable) {
        problems.invalid(
            "spec.allowedRegions",
            "no backend has a region in this list, so no request could be served",
        );
    }
}

fn retry(retry: &RetryPolicy, problems: &mut Problems) -> RetryConfig {
    problems.names(
        "spec.retry.providerErrorCodes",
        &retry.provider_error_codes,
        128,
    );
    let config = RetryConfig {
        attempts: problems.ranged_u32("spec.retry.attempts", retry.attempts.into(), 1, 10),
        retry_on: dedup(retry.retry_on.iter().copied()),
        provider_error_codes: dedup(retry.provider_error_codes.iter().cloned()),
        initial_backoff_ms: problems.duration_ms(
            "spec.retry.initialBackoff",
            &retry.initial_backoff,
            false,
        ),
        max_backoff_ms: problems.duration_ms("spec.retry.maxBackoff", &retry.max_backoff, false),
        retry_after_cap_ms: problems.duration_ms(
            "spec.retry.retryAfterCap",
            &retry.retry_after_cap,
            false,
        ),
        budget_percent: problems.ranged_u32(
            "spec.retry.budgetPercent",
            retry.budget_percent.into(),
            0,
            100,
        ),
    };
    if config.initial_backoff_ms > config.max_backoff_ms {
        problems.invalid(
            "spec.retry.initialBackoff",
            format!("must not exceed maxBackoff ({})", retry.max_backoff),
        );
    }
    config
}

fn timeouts(timeouts: &Timeouts, problems: &mut Problems) -> TimeoutConfig {
    let config = TimeoutConfig {
        connect_ms: problems.duration_ms("spec.timeouts.connect", &timeouts.connect, true),
        first_byte_ms: problems.duration_ms("spec.timeouts.firstByte", &timeouts.first_byte, true),
        idle_ms: problems.duration_ms("spec.timeouts.idle", &timeouts.idle, true),
        total_ms: problems.duration_ms("spec.timeouts.total", &timeouts.total, true),
    };
    for (field, ms) in [
        ("spec.timeouts.connect", config.connect_ms),
        ("spec.timeouts.firstByte", config.first_byte_ms),
    ] {
        if ms > config.total_ms && config.total_ms > 0 {
            problems.invalid(field, format!("must not exceed total ({})", timeouts.total));
        }
    }
    config
}

fn breaker(breaker: &CircuitBreaker, problems: &mut Problems) -> Option<BreakerConfig> {
    let field = "spec.circuitBreaker";
    let config = BreakerConfig {
        consecutive_failures: problems.ranged_u32(
            format_args!("{field}.consecutiveFailures"),
            breaker.consecutive_failures.into(),
            1,
            1_000,
        ),
        error_rate_percent: problems.ranged_u32(
            format_args!("{field}.errorRatePercent"),
            breaker.error_rate_percent.into(),
            1,
            100,
        ),
        min_requests: problems.ranged_u32(
            format_args!("{field}.minRequests"),
            breaker.min_requests.into(),
            1,
            u32::MAX,
        ),
        window_ms: problems.duration_ms(format_args!("{field}.window"), &breaker.window, true),
        open_for_ms: problems.duration_ms(format_args!("{field}.openFor"), &breaker.open_for, true),
    };
    // Validated even when disabled, so turning the breaker on later cannot surprise anyone.
    (!breaker.disabled).then_some(config)
}

fn hedge_policy(hedge: &HedgePolicy, problems: &mut Problems) -> HedgeConfig {
    let delay = match hedge.delay.as_str() {
        "p95" => HedgeDelay::P95,
        fixed => HedgeDelay::Fixed {
            ms: problems.duration_ms("spec.hedge.delay", fixed, false),
        },
    };
    HedgeConfig {
        delay,
        max_percent: problems.ranged_u32("spec.hedge.maxPercent", hedge.max_percent.into(), 1, 100),
    }
}

fn cache_policy(cache: &CachePolicy, problems: &mut Problems) -> CacheConfig {
    CacheConfig {
        ttl_ms: problems.duration_ms("spec.cache.ttl", &cache.ttl, true),
        scope: cache.scope,
        max_entries: problems
            .ranged_u32("spec.cache.maxEntries", cache.max_entries, 1, 10_000_000)
            .into(),
    }
}

fn semantic_cache(semantic: &SemanticCachePolicy, problems: &mut Problems) -> SemanticCacheConfig {
    let field = "spec.cache.semantic";
    problems.name(
        format_args!("{field}.embeddingModel"),
        &semantic.embedding_model,
        MAX_MODEL_NAME,
    );
    if !(0.5..=1.0).contains(&semantic.threshold) {
        problems.invalid(
            format_args!("{field}.threshold"),
            format!("must be between 0.5 and 1, got {}", semantic.threshold),
        );
    }
    SemanticCacheConfig {
        embedding_model: semantic.embedding_model.trim().to_owned(),
        threshold: semantic.threshold,
        max_entries: problems
            .ranged_u32(
                format_args!("{field}.maxEntries"),
                semantic.max_entries,
                1,
                100_000,
            )
            .into(),
    }
}

fn parameters(
    field: &str,
    parameters: Option<&RequestParameters>,
    problems: &mut Problems,
) -> RequestParameters {
    let Some(parameters) = parameters else {
        return RequestParameters::default();
    };
    if let Some(t) = parameters.temperature {
        problems.ranged_f64(format_args!("{field}.temperature"), t, 0.0, 2.0);
    }
    if let Some(p) = parameters.top_p {
        problems.ranged_f64(format_args!("{field}.topP"), p, 0.0, 1.0);
    }
    if let Some(n) = parameters.max_tokens {
        problems.at_least_u64(format_args!("{field}.maxTokens"), n, 1);
    }
    parameters.clone()
}

/// Every built-in detector; listed here so that an empty `entities` means all of them.
const ALL_PII_ENTITIES: [PiiEntity; 6] = [
    PiiEntity::Email,
    PiiEntity::Phone,
    PiiEntity::CreditCard,
    PiiEntity::Iban,
    PiiEntity::NationalId,
    PiiEntity::IpAddress,
];

/// Fails to compile when a detector is added without extending [`ALL_PII_ENTITIES`].
const fn _all_pii_entities_listed(entity: PiiEntity) {
    match entity {
        PiiEntity::Email
        | PiiEntity::Phone
        | PiiEntity::CreditCard
        | PiiEntity::Iban
        | PiiEntity::NationalId
        | PiiEntity::IpAddress => {}
    }
}

fn pii_policy(pii: &PiiRedaction, problems: &mut Problems) -> PiiConfig {
    check_patterns(
        "spec.piiRedaction.customPatterns",
        &pii.custom_patterns,
        problems,
    );
    PiiConfig {
        mode: pii.mode,
        entities: if pii.entities.is_empty() {
            ALL_PII_ENTITIES.to_vec()
        } else {
            dedup(pii.entities.iter().copied())
        },
        custom_patterns: pii.custom_patterns.clone(),
        responses: pii.responses,
    }
}

fn guardrails_policy(guardrails: &Guardrails, problems: &mut Problems) -> GuardrailsConfig {
    let field = "spec.guardrails";
    check_patterns(
        &format!("{field}.blockedPatterns"),
        &guardrails.blocked_patterns,
        problems,
    );
    for (i, pattern) in guardrails.blocked_patterns.iter().enumerate() {
        if let Some(first) = guardrails.blocked_patterns[..i]
            .iter()
            .position(|other| other.name == pattern.name)
        {
            problems.invalid(
                format_args!("{field}.blockedPatterns[{i}].name"),
                format!(
                    "{:?} is already the name of blockedPatterns[{first}]",
                    pattern.name
                ),
            );
        }
    }
    GuardrailsConfig {
        max_prompt_tokens: guardrails
            .max_prompt_tokens
            .map(|n| problems.at_least_u64(format_args!("{field}.maxPromptTokens"), n, 1)),
        max_tokens: guardrails
            .max_tokens
            .map(|n| problems.ranged_u32(format_args!("{field}.maxTokens"), n, 1, u32::MAX)),
        blocked_patterns: guardrails.blocked_patterns.clone(),
    }
}

fn stickiness(
    strategy: RoutingStrategy,
    sticky: &Stickiness,
    problems: &mut Problems,
) -> StickinessConfig {
    if strategy != RoutingStrategy::Weighted {
        problems.invalid(
            "spec.stickiness",
            "applies to the weighted strategy; set strategy: weighted",
        );
    }
    let header = match (sticky.by, &sticky.header) {
        (StickyBy::Header, None) => {
            problems.invalid(
                "spec.stickiness.header",
                "stickiness by header needs the header name",
            );
            None
        }
        (_, Some(name)) => {
            if http_header_name(name) {
                Some(name.to_ascii_lowercase())
            } else {
                problems.invalid(
                    "spec.stickiness.header",
                    format!("{name:?} is not a valid HTTP header name"),
                );
                None
            }
        }
        (StickyBy::Key, None) => None,
    };
    StickinessConfig {
        by: sticky.by,
        header,
    }
}

fn http_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

fn shadow_policy(
    namespace: &str,
    shadow: &ShadowPolicy,
    backends: &[Backend],
    problems: &mut Problems,
) -> ShadowConfig {
    let field = "spec.shadow";
    if backends.iter().any(|b| b.name == shadow.backend.name) {
        problems.invalid(
            format_args!("{field}.backend.name"),
            format!(
                "{:?} is already the name of a route backend; the shadow backend needs its own name",
                shadow.backend.name
            ),
        );
    }
    ShadowConfig {
        backend: backend_at(
            namespace,
            &format!("{field}.backend"),
            &shadow.backend,
            problems,
        ),
        percent: problems.ranged_u32(
            format_args!("{field}.percent"),
            shadow.percent.into(),
            1,
            100,
        ),
    }
}

/// Names and regexes of user patterns (PII custom patterns, blocked patterns) at `field`.
fn check_patterns(field: &str, patterns: &[PiiPattern], problems: &mut Problems) {
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let name_ok = !pattern.name.is_empty()
            && pattern.name.len() <= 63
            && pattern
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            problems.invalid(
                format_args!("{field}.name"),
                "must be 1-63 characters of A-Z, a-z, 0-9, '_' or '-'",
            );
        }
        if let Err(error) = RegexBuilder::new(&pattern.regex)
            .size_limit(MAX_PII_REGEX_BYTES)
            .build()
        {
            // The regex error spans several lines with a caret; one line reads better in a condition.
            let error = error
                .to_string()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            problems.invalid(format_args!("{field}.regex"), error);
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    !name.is_empty()
        && name.len() <= 63
        && inner_ok
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `YYYY-MM-DD` optionally followed by `-preview`.
fn is_api_version(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let parts: Vec<&str> = date.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.as_slice(), [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2))
}

#[cfg(test)]
mod tests;
