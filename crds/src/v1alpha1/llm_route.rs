//! `LLMRoute`: the model name clients call and the provider backends that serve it.
#![expect(
    clippy::duplicated_attributes,
    reason = "kube's printcolumn(...) entries legitimately repeat type_ = \"...\""
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BudgetRef, RateLimit, SecretKeyRef, UsageTotals, default_gateway};

/// Routes one client-facing model name (and its aliases) to one or more provider backends, with the
/// policies that govern how a request picks a backend and survives its failures.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "LLMRoute",
    plural = "llmroutes",
    namespaced,
    status = "LLMRouteStatus",
    shortname = "llmr",
    category = "sluice",
    selectable = ".spec.gateway",
    doc = "LLMRoute maps a model name that clients call to provider backends, with routing, retry, timeout, circuit-breaker, cache, limit and budget policies.",
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.model",
        description = "Model name clients call"
    ),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.strategy",
        description = "How a backend is chosen"
    ),
    printcolumn(
        name = "Backends",
        type_ = "string",
        json_path = ".status.backendsReady",
        description = "Healthy backends / all backends"
    ),
    printcolumn(
        name = "Requests",
        type_ = "integer",
        json_path = ".status.usage.requests",
        description = "Requests served"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.backends.all(b, self.backends.exists_one(o, o.name == b.name))").message("backend names must be unique within a route").field_path(".backends"))]
#[x_kube(validation = Rule::new("self.strategy != 'lowest-cost' || self.backends.all(b, has(b.pricing))").message("strategy lowest-cost needs pricing on every backend").field_path(".strategy"))]
#[x_kube(validation = Rule::new("!has(self.stickiness) || self.strategy == 'weighted'").message("stickiness applies to the weighted strategy").field_path(".stickiness"))]
#[x_kube(validation = Rule::new("!has(self.shadow) || self.backends.all(b, b.name != self.shadow.backend.name)").message("the shadow backend needs a name of its own (not one of the route's backends)").field_path(".shadow.backend.name"))]
pub struct LLMRouteSpec {
    /// Name of the Sluice gateway that serves this route. Each gateway's operator only compiles the
    /// resources that name it.
    #[serde(default = "default_gateway")]
    #[schemars(length(min = 1, max = 63))]
    pub gateway: String,
    /// Model name that clients send in the request's `model` field. Must be unique among the routes of
    /// one gateway (aliases included).
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// Further model names that select this route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub aliases: Vec<String>,
    /// How a backend is chosen among the available ones: `priority-failover` (lowest priority value
    /// first, the next on failure), `weighted` (smooth weighted round robin), `least-latency` (lowest
    /// moving average of observed latency), `lowest-cost` (cheapest by pricing).
    #[serde(default)]
    pub strategy: RoutingStrategy,
    /// Provider backends that can serve this route. At least one.
    #[schemars(length(min = 1, max = 32))]
    pub backends: Vec<Backend>,
    /// Retry policy for failed upstream attempts.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Timeouts by kind.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Per-backend circuit breaker.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Hedged requests: after a delay, also try the next backend and take the first good answer. Off
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgePolicy>,
    /// Response cache. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
    /// Rate limit shared by all callers of this route (per gateway fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Budgets (in this namespace) that every request on this route is charged against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub budget_refs: Vec<BudgetRef>,
    /// Request parameters applied when the client did not set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<RequestParameters>,
    /// Request parameters that replace whatever the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<RequestParameters>,
    /// Text prepended to the system prompt of every request (a system message is added when the
    /// request has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub system_prompt_prefix: Option<String>,
    /// PII detection and redaction. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_redaction: Option<PiiRedaction>,
    /// Regions the request may be sent to. When set, backends outside these regions are never used,
    /// not even on fallback. Empty means any region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allowed_regions: Vec<String>,
    /// Limits on what a request may ask for: prompt size, output size, forbidden text. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Guardrails>,
    /// Sticky assignment for the `weighted` strategy (A/B tests): the same caller always lands on the
    /// same backend while it is available. Off when absent (plain weighted round robin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Stickiness>,
    /// Mirror a share of requests to another backend, fire and forget: the client never waits for it or
    /// sees its answer. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowPolicy>,
}

/// Limits on requests, enforced before anything is sent upstream (400 with a clear error).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.blockedPatterns.all(p, self.blockedPatterns.exists_one(o, o.name == p.name))").message("blocked pattern names must be unique").field_path(".blockedPatterns"))]
pub struct Guardrails {
    /// Most prompt tokens a request may carry (estimated at about 4 characters per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prompt_tokens: Option<i64>,
    /// Highest `max_tokens` a request may ask for; requests that set none get this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub max_tokens: Option<i64>,
    /// Requests whose text matches any of these patterns are refused (the error names the pattern,
    /// never the text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub blocked_patterns: Vec<PiiPattern>,
}

/// What a sticky assignment hashes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StickyBy {
    /// The caller's virtual key.
    #[default]
    Key,
    /// The value of a request header (e.g. a user or session id); requests without it fall back to
    /// the key.
    Header,
}

/// Sticky assignment: a deterministic hash of the key or a header picks the backend, in proportion to
/// the backends' weights.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.by != 'header' || has(self.header)").message("stickiness by header needs the header name").field_path(".header"))]
pub struct Stickiness {
    /// key (default) or header.
    #[serde(default)]
    pub by: StickyBy,
    /// Request header whose value assigns the caller (with `by: header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub header: Option<String>,
}

/// Shadow traffic: a copy of a share of requests goes to a backend that is not one of the route's
/// candidates. Its answers are discarded and counted in their own metrics, never billed to the caller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowPolicy {
    /// The backend that receives the copies (the same fields as a route backend). Region rules apply to
    /// it too: a copy is never sent outside the request's allowed regions.
    pub backend: Backend,
    /// Share of requests mirrored, in percent.
    #[schemars(range(min = 1, max = 100))]
    pub percent: i32,
}

/// Backend selection strategy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    /// Lowest `priority` value first; the next one when it fails.
    #[default]
    PriorityFailover,
    /// Smooth weighted round robin over `weight`.
    Weighted,
    /// Lowest moving average of observed latency.
    LeastLatency,
    /// Cheapest by `pricing`.
    LowestCost,
}

/// Kinds of upstream API a backend speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// OpenAI's API (`https://api.openai.com/v1`).
    Openai,
    /// Azure OpenAI deployments.
    AzureOpenai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google Gemini's Generative Language API.
    Gemini,
    /// Any server that speaks OpenAI's chat-completions API (vLLM, Ollama, Mistral, Groq, ...).
    OpenaiCompatible,
}

impl Provider {
    /// The name used in manifests, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::AzureOpenai => "azure-openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }
}

/// One upstream that can serve the route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider != 'azure-openai' || (has(self.azure) && has(self.endpoint))").message("provider azure-openai needs endpoint and azure.deployment"))]
#[x_kube(validation = Rule::new("self.provider != 'openai-compatible' || has(self.endpoint)").message("provider openai-compatible needs an endpoint").field_path(".endpoint"))]
#[x_kube(validation = Rule::new("self.provider == 'openai-compatible' || has(self.credentialsRef)").message("this provider needs credentialsRef naming the Secret that holds its API key").field_path(".credentialsRef"))]
#[x_kube(validation = Rule::new("self.provider == 'azure-openai' || !has(self.azure)").message("azure settings apply only to provider azure-openai").field_path(".azure"))]
pub struct Backend {
    /// Name of the backend, unique within the route; shown in metrics, status and the decision header.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// API the upstream speaks: openai, azure-openai, anthropic, gemini or openai-compatible.
    pub provider: Provider,
    /// Model name sent upstream (for azure-openai the deployment decides; this names the model for
    /// pricing and display).
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// Base URL of the upstream API. Defaults to the provider's public endpoint; required for
    /// azure-openai (`https://<resource>.openai.azure.com`) and openai-compatible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
    /// Secret key that holds the provider API key. Keys are never written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretKeyRef>,
    /// Relative share of traffic under the `weighted` strategy. Zero takes the backend out of rotation
    /// while keeping it as a fallback.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub weight: i32,
    /// Order under `priority-failover` and for fallback: lower values are tried first.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000))]
    pub priority: i32,
    /// Region the upstream runs in (free-form, e.g. `eu`, `us-east`), matched against
    /// `allowedRegions` on routes and keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub region: Option<String>,
    /// Context window of the upstream model in tokens; a prompt that is too long for one backend falls
    /// back to a backend with a larger window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<i64>,
    /// Price per million tokens in US dollars. Defaults to Sluice's built-in table for well-known models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// Azure OpenAI deployment settings (provider azure-openai only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSettings>,
}

fn default_weight() -> i32 {
    1
}

/// Price per million tokens, in US dollars.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Dollars per million prompt (input) tokens.
    #[schemars(range(min = 0.0))]
    pub input_per_million: f64,
    /// Dollars per million completion (output) tokens.
    #[schemars(range(min = 0.0))]
    pub output_per_million: f64,
    /// Dollars per million cached prompt tokens; defaults to the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cached_input_per_million: Option<f64>,
}

/// Azure OpenAI deployment settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSettings {
    /// Deployment name in the Azure resource.
    #[schemars(length(min = 1, max = 64))]
    pub deployment: String,
    /// Value of the `api-version` query parameter.
    #[serde(default = "default_azure_api_version")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}(-preview)?$"))]
    pub api_version: String,
}

fn default_azure_api_version() -> String {
    "2024-10-21".to_owned()
}

/// Which failures are retried.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RetryOn {
    /// The TCP or TLS connection could not be established, or was reset before a response.
    #[serde(rename = "connect-error")]
    ConnectError,
    /// A connect, first-byte or idle timeout fired.
    #[serde(rename = "timeout")]
    Timeout,
    /// The upstream answered 5xx (or sent an error as the first event of a stream).
    #[serde(rename = "5xx")]
    ServerError,
    /// The upstream answered 429.
    #[serde(rename = "429")]
    RateLimited,
    /// The prompt exceeded the backend's context window (moves to a backend with a larger window).
    #[serde(rename = "context-length")]
    ContextLength,
}

/// Retry and fallback policy. An attempt that fails with a retryable failure moves to the next
/// backend in priority order (or retries the same one when it is the only one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("![self.initialBackoff, self.maxBackoff].all(d, d.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')) || duration(self.initialBackoff) <= duration(self.maxBackoff)").message("initialBackoff must not exceed maxBackoff").field_path(".initialBackoff"))]
pub struct RetryPolicy {
    /// Upstream attempts per request including the first; 1 disables retries and fallback.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: i32,
    /// Failures that are retried.
    #[serde(default = "default_retry_on")]
    #[schemars(length(max = 8))]
    pub retry_on: Vec<RetryOn>,
    /// Provider error codes (the `code` or `type` of the upstream error body) that are retried in
    /// addition to `retryOn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub provider_error_codes: Vec<String>,
    /// Backoff before the first retry; doubled each retry with full jitter.
    #[serde(default = "default_initial_backoff")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub initial_backoff: String,
    /// Upper bound of the backoff.
    #[serde(default = "default_max_backoff")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub max_backoff: String,
    /// Longest `Retry-After` the gateway waits for before trying again; a longer one moves to another
    /// backend instead.
    #[serde(default = "default_retry_after_cap")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub retry_after_cap: String,
    /// Retries allowed as a percentage of requests (per backend, over 10 s), so that an outage never
    /// multiplies load.
    #[serde(default = "default_retry_budget")]
    #[schemars(range(min = 0, max = 100))]
    pub budget_percent: i32,
}

fn default_attempts() -> i32 {
    3
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![
        RetryOn::ConnectError,
        RetryOn::Timeout,
        RetryOn::ServerError,
        RetryOn::RateLimited,
        RetryOn::ContextLength,
    ]
}
fn default_initial_backoff() -> String {
    "50ms".to_owned()
}
fn default_max_backoff() -> String {
    "2s".to_owned()
}
fn default_retry_after_cap() -> String {
    "10s".to_owned()
}
fn default_retry_budget() -> i32 {
    20
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            retry_on: default_retry_on(),
            provider_error_codes: Vec::new(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            retry_after_cap: default_retry_after_cap(),
            budget_percent: default_retry_budget(),
        }
    }
}

/// Timeouts by kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("![self.connect, self.firstByte, self.total].all(d, d.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')) || (duration(self.connect) <= duration(self.total) && duration(self.firstByte) <= duration(self.total))").message("connect and firstByte must not exceed total").field_path(".total"))]
pub struct Timeouts {
    /// Establishing the upstream connection (TCP and TLS).
    #[serde(default = "default_connect_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub connect: String,
    /// From sending the request to the first response byte (time to first token for streams).
    #[serde(default = "default_first_byte_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub first_byte: String,
    /// Longest silence between two chunks of a streamed response.
    #[serde(default = "default_idle_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub idle: String,
    /// Whole request, all attempts included.
    #[serde(default = "default_total_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub total: String,
}

fn default_connect_timeout() -> String {
    "5s".to_owned()
}
fn default_first_byte_timeout() -> String {
    "60s".to_owned()
}
fn default_idle_timeout() -> String {
    "30s".to_owned()
}
fn default_total_timeout() -> String {
    "10m".to_owned()
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect_timeout(),
            first_byte: default_first_byte_timeout(),
            idle: default_idle_timeout(),
            total: default_total_timeout(),
        }
    }
}

/// Per-backend circuit breaker: opens after consecutive failures or a high error rate, probes with
/// one request after `openFor` (half-open) and closes when the probe succeeds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Turn the breaker off entirely.
    #[serde(default)]
    pub disabled: bool,
    /// Consecutive failures that open the circuit.
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 1_000))]
    pub consecutive_failures: i32,
    /// Error rate (percent of requests in `window`) that opens the circuit.
    #[serde(default = "default_error_rate")]
    #[schemars(range(min = 1, max = 100))]
    pub error_rate_percent: i32,
    /// Requests needed in `window` before the error rate is judged.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1))]
    pub min_requests: i32,
    /// Window over which the error rate is measured.
    #[serde(default = "default_breaker_window")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub window: String,
    /// How long an open circuit rejects traffic before one probe request is let through.
    #[serde(default = "default_open_for")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub open_for: String,
}

fn default_consecutive_failures() -> i32 {
    5
}
fn default_error_rate() -> i32 {
    50
}
fn default_min_requests() -> i32 {
    20
}
fn default_breaker_window() -> String {
    "30s".to_owned()
}
fn default_open_for() -> String {
    "15s".to_owned()
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            disabled: false,
            consecutive_failures: default_consecutive_failures(),
            error_rate_percent: default_error_rate(),
            min_requests: default_min_requests(),
            window: default_breaker_window(),
            open_for: default_open_for(),
        }
    }
}

/// Hedged requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HedgePolicy {
    /// Delay before the hedge is sent: a duration, or `p95` to use the backend's observed 95th
    /// percentile latency.
    #[serde(default = "default_hedge_delay")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^(p95|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$")
    )]
    pub delay: String,
    /// Hedges allowed as a percentage of requests, so hedging never doubles load.
    #[serde(default = "default_hedge_budget")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent: i32,
}

fn default_hedge_delay() -> String {
    "p95".to_owned()
}
fn default_hedge_budget() -> i32 {
    10
}

/// Who may share a cached response.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheScope {
    /// Only the same virtual key.
    #[default]
    Key,
    /// Keys in the same namespace.
    Namespace,
    /// Everyone who may call the route.
    Shared,
}

/// Exact-match response cache, optionally with a semantic layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CachePolicy {
    /// How long a cached response is served.
    #[serde(default = "default_cache_ttl")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub ttl: String,
    /// Who may share a cached response: key (default), namespace or shared.
    #[serde(default)]
    pub scope: CacheScope,
    /// Most responses kept per gateway.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_entries: i64,
    /// Also serve answers to prompts that mean the same (opt-in): prompts are embedded through an
    /// embeddings route of this gateway and compared by cosine similarity. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticCachePolicy>,
}

/// Semantic cache: a stored answer is served when a new prompt's embedding is close enough to the one it
/// answered, for the same tenant, route and sampling parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SemanticCachePolicy {
    /// Model name (or alias) of an LLMRoute of the same gateway that serves embeddings.
    #[schemars(length(min = 1, max = 256))]
    pub embedding_model: String,
    /// Cosine similarity at or above which a stored answer is served.
    #[serde(default = "default_semantic_threshold")]
    #[schemars(range(min = 0.5, max = 1.0))]
    pub threshold: f64,
    /// Most prompts indexed per route and gateway process (oldest dropped first).
    #[serde(default = "default_semantic_entries")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_entries: i64,
}

fn default_semantic_threshold() -> f64 {
    0.95
}
fn default_semantic_entries() -> i64 {
    1_000
}

fn default_cache_ttl() -> String {
    "5m".to_owned()
}
fn default_cache_entries() -> i64 {
    10_000
}

/// What to do with detected PII.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PiiMode {
    /// Mask it before the upstream sees it.
    #[default]
    Redact,
    /// Refuse the request with 400.
    Block,
    /// Only count it in metrics.
    DetectOnly,
}

/// Built-in PII detectors.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PiiEntity {
    Email,
    Phone,
    CreditCard,
    Iban,
    NationalId,
    IpAddress,
}

/// A user-defined PII pattern.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PiiPattern {
    /// Label used in the mask (`[NAME]`) and in metrics.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: String,
    /// Regular expression (Rust `regex` syntax).
    #[schemars(length(min = 1, max = 1024))]
    pub regex: String,
}

/// PII detection and redaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PiiRedaction {
    /// redact (default), block or detect-only.
    #[serde(default)]
    pub mode: PiiMode,
    /// Built-in detectors to run; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<PiiEntity>,
    /// Additional patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub custom_patterns: Vec<PiiPattern>,
    /// Also apply to responses (streamed responses included).
    #[serde(default)]
    pub responses: bool,
}

/// Sampling parameters used as route defaults or overrides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestParameters {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// Nucleus sampling probability mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    /// Most completion tokens per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i64>,
}

/// Observed state of an LLMRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LLMRouteStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Healthy backends out of all backends, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends_ready: Option<String>,
    /// Health of each backend as reported by the gateways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendHealth>,
    /// Usage totals reported by the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageTotals>,
}

/// Health of one backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendHealth {
    /// Backend name.
    pub name: String,
    /// Circuit state: Closed, Open or HalfOpen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<String>,
    /// Median latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<f64>,
    /// Fraction of failed attempts in the last report interval (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Class of the last failure (no provider message: it may echo user data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
}
