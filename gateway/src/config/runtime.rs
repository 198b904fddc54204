//! The hot-path form of a snapshot: validated once, then only read. Routes by every name they answer to,
//! backends with their upstream target, HTTP client, live state and metric handles resolved up front.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_crds::config::{
    BackendConfig, BudgetConfig, GatewaySecrets, KeyConfig, RetryConfig, RouteConfig,
    SCHEMA_VERSION, Snapshot,
};
use sluice_crds::v1alpha1::{Provider, RequestParameters, RoutingStrategy};

use super::state::{BackendState, RouteState, StateRegistry};
use crate::auth::{HashProblem, Key, KeyTable, Scope};
use crate::metrics::{BackendMetrics, Metrics};
use crate::providers::{ApiKey, BackendTarget, ProviderKind};
use crate::reliability::{BackendReliability, ReliabilityRegistry, RouteReliability};
use crate::upstream::{HttpClient, Transport};

/// What building a configuration needs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub transport: &'a Transport,
    pub state: &'a StateRegistry,
    /// Breakers, budgets and latency histograms, kept across reloads for unchanged backends.
    pub reliability: &'a ReliabilityRegistry,
    pub metrics: &'a Metrics,
}

/// A snapshot that cannot be served; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidConfig {
    pub problems: Vec<String>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

/// Per-route timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

/// One backend, ready to be called.
#[derive(Debug)]
pub struct Backend {
    pub name: Arc<str>,
    pub provider: ProviderKind,
    pub target: BackendTarget,
    pub client: HttpClient,
    pub region: Option<String>,
    pub priority: u32,
    pub weight: u32,
    /// Input plus output price per million tokens, compared by `lowest-cost`.
    pub blended_price: Option<f64>,
    pub state: Arc<BackendState>,
    /// Circuit breaker, retry budget and latency histogram (see [`crate::reliability`]).
    pub reliability: Arc<BackendReliability>,
    pub metrics: BackendMetrics,
    /// The compiled backend, for later layers (pricing, context window).
    pub config: BackendConfig,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    /// The primary model name.
    pub model: Arc<str>,
    pub strategy: RoutingStrategy,
    pub backends: Vec<Arc<Backend>>,
    pub timeouts: Timeouts,
    pub retry: RetryConfig,
    pub defaults: RequestParameters,
    pub overrides: RequestParameters,
    pub system_prompt_prefix: Option<String>,
    pub allowed_regions: Vec<String>,
    pub state: Arc<RouteState>,
    /// The route's hedge budget.
    pub reliability: Arc<RouteReliability>,
    /// The compiled route, for later layers (breaker, hedge, cache, limits, PII).
    pub config: RouteConfig,
    /// PII policy and guardrails, compiled once per snapshot.
    pub policy: Arc<crate::guardrails::RoutePolicy>,
    /// Where copies of a share of requests go (never a candidate).
    pub shadow: Option<crate::shadow::ShadowTarget>,
}

/// A served configuration. Requests hold an `Arc` of it for their whole life, so a reload never changes
/// the configuration under a request in flight.
#[derive(Debug)]
pub struct RuntimeConfig {
    /// `sha256:…` of the snapshot.
    pub hash: Arc<str>,
    pub gateway: String,
    /// Unix seconds when this configuration was built (the `created` of `/v1/models` entries).
    pub built_at: u64,
    routes_by_name: HashMap<String, Arc<Route>>,
    /// Routes in snapshot order.
    pub routes: Vec<Arc<Route>>,
    pub keys: KeyTable,
    /// Published hashes that were left out (duplicates, malformed); logged after each build.
    pub key_problems: Vec<HashProblem>,
    pub budgets: HashMap<String, BudgetConfig>,
}

impl RuntimeConfig {
    /// The route a request's `model` selects (primary name or alias).
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes_by_name.get(model)
    }

    /// Validates `snapshot` and converts it; fails with every problem found.
    pub fn build(snapshot: &Snapshot, ctx: BuildContext<'_>) -> Result<Self, InvalidConfig> {
        let config = &snapshot.config;
        let mut problems = Vec::new();
        if config.schema_version > SCHEMA_VERSION {
            problems.push(format!(
                "schema version {} is newer than this gateway understands ({SCHEMA_VERSION})",
                config.schema_version
            ));
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut routes_by_name: HashMap<String, Arc<Route>> = HashMap::new();
        for route_config in &config.routes {
            let Some(route) = build_route(route_config, &snapshot.secrets, ctx, &mut problems)
            else {
                continue;
            };
            let route = Arc::new(route);
            for name in std::iter::once(&route_config.model).chain(&route_config.aliases) {
                if let Some(other) = routes_by_name.insert(name.clone(), route.clone()) {
                    problems.push(format!(
                        "model name {name:?} is claimed by routes {} and {}",
                        other.id, route.id
                    ));
                }
            }
            routes.push(route);
        }
        let keys: Vec<Arc<Key>> = config
            .keys
            .iter()
            .map(|key| Arc::new(build_key(key, &routes_by_name)))
            .collect();
        let (key_table, key_problems) = KeyTable::build(keys, &snapshot.secrets.key_hashes);
        if !problems.is_empty() {
            return Err(InvalidConfig { problems });
        }
        Ok(Self {
            hash: snapshot.hash.as_str().into(),
            gateway: config.gateway.clone(),
            built_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            routes_by_name,
            routes,
            keys: key_table,
            key_problems,
            budgets: config
                .budgets
                .iter()
                .map(|budget| (budget.id.clone(), budget.clone()))
                .collect(),
        })
    }

    /// `(route id, backend name)` of every backend, for pruning state of removed ones.
    pub fn backend_ids(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .flat_map(|route| {
                route
                    .backends
                    .iter()
                    .map(|backend| (route.id.to_string(), backend.name.to_string()))
            })
            .collect()
    }
}

fn build_route(
    config: &RouteConfig,
    secrets: &GatewaySecrets,
    ctx: BuildContext<'_>,
    problems: &mut Vec<String>,
) -> Option<Route> {
    let id: Arc<str> = config.id.as_str().into();
    let before = problems.len();
    if config.backends.is_empty() {
        problems.push(format!("route {id}: no backends"));
    }
    let timeouts = Timeouts {
        connect: Duration::from_millis(config.timeouts.connect_ms),
        first_byte: Duration::from_millis(config.timeouts.first_byte_ms),
        idle: Duration::from_millis(config.timeouts.idle_ms),
        total: Duration::from_millis(config.timeouts.total_ms),
    };
    for (name, value) in [
        ("connect", timeouts.connect),
        ("firstByte", timeouts.first_byte),
        ("idle", timeouts.idle),
        ("total", timeouts.total),
    ] {
        if value.is_zero() {
            problems.push(format!("route {id}: timeout {name} must be positive"));
        }
    }
    let client = ctx.transport.client(timeouts.connect);
    let mut seen = HashSet::new();
    let mut backends = Vec::with_capacity(config.backends.len());
    for backend in &config.backends {
        if !seen.insert(backend.name.as_str()) {
            problems.push(format!(
                "route {id}: backend name {:?} is used twice",
                backend.name
            ));
        }
        match build_backend(&id, backend, secrets, client.clone(), ctx) {
            Ok(backend) => backends.push(Arc::new(backend)),
            Err(problem) => {
                problems.push(format!("route {id} backend {}: {problem}", backend.name))
            }
        }
    }
    let policy = crate::guardrails::RoutePolicy::build(config)
        .map_err(|problem| problems.push(format!("route {id}: {problem}")))
        .ok();
    let shadow = config.shadow.as_ref().and_then(|shadow| {
        build_backend(&id, &shadow.backend, secrets, client.clone(), ctx)
            .map(|backend| crate::shadow::ShadowTarget::new(Arc::new(backend), shadow.percent))
            .map_err(|problem| {
                problems.push(format!(
                    "route {id} shadow backend {}: {problem}",
                    shadow.backend.name
                ))
            })
            .ok()
    });
    if problems.len() > before {
        return None;
    }
    let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
    Some(Route {
        state: ctx.state.route(&id, &names),
        reliability: ctx.reliability.route(&id),
        model: config.model.as_str().into(),
        strategy: config.strategy,
        backends,
        timeouts,
        retry: config.retry.clone(),
        defaults: config.defaults.clone(),
        overrides: config.overrides.clone(),
        system_prompt_prefix: config.system_prompt_prefix.clone(),
        allowed_regions: config.allowed_regions.clone(),
        config: config.clone(),
        policy: Arc::new(policy.unwrap_or_default()),
        shadow,
        id,
    })
}

fn provider_kind(provider: Provider) -> ProviderKind {
    match provider {
        Provider::Openai => ProviderKind::OpenAi,
        Provider::AzureOpenai => ProviderKind::AzureOpenAi,
        Provider::Anthropic => ProviderKind::Anthropic,
        Provider::Gemini => ProviderKind::Gemini,
        Provider::OpenaiCompatible => ProviderKind::OpenAiCompatible,
    }
}

fn build_backend(
    route: &Arc<str>,
    config: &BackendConfig,
    secrets: &GatewaySecrets,
    client: HttpClient,
    ctx: BuildContext<'_>,
) -> Result<Backend, String> {
    let provider = provider_kind(config.provider);
    let uri: http::Uri = config
        .endpoint
        .parse()
        .map_err(|_| format!("endpoint {:?} is not a URL", config.endpoint))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "endpoint {:?} must be an http(s) URL with a host",
            config.endpoint
        ));
    }
    let api_key = match &config.credential {
        Some(id) => {
            let secret = secrets
                .credentials
                .get(id)
                .ok_or_else(|| format!("credential {id} is missing from the secrets"))?;
            if http::HeaderValue::from_str(secret.expose()).is_err() || secret.expose().is_empty() {
                return Err(format!(
                    "credential {id} is empty or not a valid header value"
                ));
            }
            Some(ApiKey::new(secret.expose()))
        }
        None if provider == ProviderKind::OpenAiCompatible => None,
        None => return Err(format!("provider {} needs a credential", provider.as_str())),
    };
    let mut target = BackendTarget::new(
        provider,
        adapter_base_url(provider, &config.endpoint),
        config.model.clone(),
    );
    target.api_key = api_key;
    if let Some(azure) = &config.azure {
        target.deployment = Some(azure.deployment.clone());
        target.api_version = Some(azure.api_version.clone());
    } else if provider == ProviderKind::AzureOpenAi {
        return Err("provider azure-openai needs azure settings".into());
    }
    let name: Arc<str> = config.name.as_str().into();
    Ok(Backend {
        metrics: ctx.metrics.backend(route, &name, provider.as_str()),
        state: ctx.state.backend(route, &name),
        reliability: ctx.reliability.backend(route, config),
        provider,
        target,
        client,
        region: config.region.clone(),
        priority: config.priority,
        weight: config.weight,
        blended_price: config
            .pricing
            .map(|p| p.input_per_million + p.output_per_million),
        config: config.clone(),
        name,
    })
}

/// The base URL in the form the provider adapter expects. The Gemini adapter adds its API version
/// (`/v1beta/models/...`) itself, while a Gemini endpoint may be written with the version, as Google's REST
/// reference shows it (`https://generativelanguage.googleapis.com/v1beta`): the version is dropped here.
fn adapter_base_url(provider: ProviderKind, endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    match provider {
        ProviderKind::Gemini => endpoint
            .strip_suffix("/v1beta")
            .or_else(|| endpoint.strip_suffix("/v1"))
            .unwrap_or(endpoint)
            .to_owned(),
        _ => endpoint.to_owned(),
    }
}

fn build_key(config: &KeyConfig, routes_by_name: &HashMap<String, Arc<Route>>) -> Key {
    let scope = if config.models.is_empty() {
        Scope::All
    } else {
        // Names that match no route are kept out: a route added later rebuilds every key anyway.
        Scope::Routes(
            config
                .models
                .iter()
                .filter_map(|name| routes_by_name.get(name))
                .map(|route| route.id.clone())
                .collect(),
        )
    };
    Key {
        id: config.id.as_str().into(),
        scope,
        expires_at: config.expires_at,
        disabled: config.disabled,
        config: config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::config::{
        GatewayConfig, PriceConfig, RetryConfig, SecretValue, TimeoutConfig,
    };

    use super::*;

    fn backend(name: &str, provider: Provider, endpoint: &str) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            provider,
            model: "m".into(),
            endpoint: endpoint.into(),
            credential: Some("ns/s/k".into()),
            weight: 1,
            priority: 0,
            region: None,
            context_window: None,
            pricing: Some(PriceConfig {
                input_per_million: 1.0,
                output_per_million: 3.0,
                cached_input_per_million: 0.5,
            }),
            azure: None,
        }
    }

    fn route(id: &str, model: &str, aliases: &[&str], backends: Vec<BackendConfig>) -> RouteConfig {
        RouteConfig {
            id: id.into(),
            model: model.into(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            strategy: RoutingStrategy::PriorityFailover,
            backends,
            retry: RetryConfig {
                attempts: 1,
                retry_on: vec![],
                provider_error_codes: vec![],
                initial_backoff_ms: 1,
                max_backoff_ms: 1,
                retry_after_cap_ms: 1,
                budget_percent: 0,
            },
            timeouts: TimeoutConfig {
                connect_ms: 1_000,
                first_byte_ms: 1_000,
                idle_ms: 1_000,
                total_ms: 1_000,
            },
            circuit_breaker: None,
            hedge: None,
            cache: None,
            rate_limit: None,
            budgets: vec![],
            defaults: RequestParameters::default(),
            overrides: RequestParameters::default(),
            system_prompt_prefix: None,
            pii: None,
            allowed_regions: vec![],
            guardrails: None,
            stickiness: None,
            shadow: None,
            semantic_cache: None,
        }
    }

    fn key(id: &str, models: &[&str]) -> KeyConfig {
        KeyConfig {
            id: id.into(),
            prefix: "sk".into(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            denied_models: vec![],
            max_prompt_tokens: None,
            max_tokens: None,
            allowed_regions: vec![],
            rate_limit: None,
            budgets: vec![],
            expires_at: None,
            disabled: false,
        }
    }

    fn build(
        routes: Vec<RouteConfig>,
        keys: Vec<KeyConfig>,
        with_credential: bool,
    ) -> Result<RuntimeConfig, InvalidConfig> {
        let mut secrets = GatewaySecrets::default();
        if with_credential {
            secrets
                .credentials
                .insert("ns/s/k".into(), SecretValue::new("sk-provider"));
        }
        let config = GatewayConfig {
            schema_version: SCHEMA_VERSION,
            gateway: "g".into(),
            routes,
            keys,
            budgets: vec![],
        };
        let (transport, state, metrics) = (
            Transport::new(Default::default()),
            StateRegistry::default(),
            Metrics::new(false),
        );
        RuntimeConfig::build(
            &Snapshot::new(config, secrets),
            BuildContext {
                transport: &transport,
                state: &state,
                reliability: &ReliabilityRegistry::default(),
                metrics: &metrics,
            },
        )
    }

    #[test]
    fn routes_answer_to_every_name_and_keys_resolve_their_scope_to_routes() {
        let routes = vec![
            route(
                "ns/a",
                "gpt-4o",
                &["fast"],
                vec![backend("b", Provider::Openai, "https://api.openai.com/v1")],
            ),
            route(
                "ns/b",
                "claude",
                &[],
                vec![backend(
                    "b",
                    Provider::Anthropic,
                    "https://api.anthropic.com",
                )],
            ),
        ];
        let config = build(
            routes,
            vec![key("ns/all", &[]), key("ns/alias", &["fast", "unknown"])],
            true,
        )
        .unwrap();
        assert_eq!(config.route("fast").map(|r| &*r.id), Some("ns/a"));
        assert_eq!(config.route("claude").map(|r| &*r.id), Some("ns/b"));
        assert!(config.route("nope").is_none());
        let scoped = &config.keys;
        assert_eq!(scoped.len(), 0, "no hashes were published");
        let alias = build_key(
            &key("ns/alias", &["fast", "unknown"]),
            &config.routes_by_name,
        );
        assert!(alias.may_use("ns/a") && !alias.may_use("ns/b"));
        assert_eq!(config.routes[1].backends[0].blended_price, Some(4.0));
    }

    #[test]
    fn every_problem_of_an_invalid_snapshot_is_reported() {
        let routes = vec![
            route(
                "ns/a",
                "gpt-4o",
                &[],
                vec![backend("b", Provider::Openai, "ftp://example.com")],
            ),
            route(
                "ns/b",
                "gpt-4o",
                &[],
                vec![backend("b", Provider::Openai, "https://api.openai.com/v1")],
            ),
            route(
                "ns/c",
                "other",
                &[],
                vec![backend(
                    "x",
                    Provider::Anthropic,
                    "https://api.anthropic.com",
                )],
            ),
        ];
        let error = build(routes, vec![], false).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(
                "route ns/a backend b: endpoint \"ftp://example.com\" must be an http(s) URL"
            ),
            "{text}"
        );
        assert!(
            text.contains("route ns/b backend b: credential ns/s/k is missing"),
            "{text}"
        );
        assert!(
            text.contains("route ns/c backend x: credential ns/s/k is missing"),
            "{text}"
        );

        let duplicate = vec![
            route(
                "ns/a",
                "gpt-4o",
                &[],
                vec![backend("b", Provider::Openai, "https://api.openai.com/v1")],
            ),
            route(
                "ns/b",
                "other",
                &["gpt-4o"],
                vec![backend("b", Provider::Openai, "https://api.openai.com/v1")],
            ),
        ];
        let error = build(duplicate, vec![], true).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("model name \"gpt-4o\" is claimed by routes ns/a and ns/b"),
            "{error}"
        );
    }

    #[test]
    fn gemini_endpoints_may_carry_the_api_version() {
        for endpoint in [
            "https://generativelanguage.googleapis.com/v1beta",
            "https://generativelanguage.googleapis.com/v1beta/",
            "https://generativelanguage.googleapis.com",
        ] {
            assert_eq!(
                adapter_base_url(ProviderKind::Gemini, endpoint),
                "https://generativelanguage.googleapis.com",
                "{endpoint}"
            );
        }
        assert_eq!(
            adapter_base_url(ProviderKind::OpenAi, "https://api.openai.com/v1/"),
            "https://api.openai.com/v1"
        );
    }
}
