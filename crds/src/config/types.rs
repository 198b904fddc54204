//! Serde types of the compiled configuration (see the module docs for the compatibility rules).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::v1alpha1::{
    AzureSettings, BudgetAction, BudgetWindow, CacheScope, FailureMode, PiiEntity, PiiMode,
    PiiPattern, Provider, RequestParameters, RetryOn, RoutingStrategy, StickyBy,
};

/// Version of the compiled configuration format.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a gateway needs, with the hash that identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub config: GatewayConfig,
    pub secrets: GatewaySecrets,
    /// `sha256:<hex>` over both halves; reported by gateways as the configuration they run.
    pub hash: String,
}

impl Snapshot {
    /// Seals a config and its secrets under their content hash.
    pub fn new(config: GatewayConfig, secrets: GatewaySecrets) -> Self {
        let hash = content_hash(&config, &secrets);
        Self {
            config,
            secrets,
            hash,
        }
    }
}

/// `sha256:<hex>` of the canonical JSON of both halves (maps are ordered, so this is stable).
pub fn content_hash(config: &GatewayConfig, secrets: &GatewaySecrets) -> String {
    let mut hasher = Sha256::new();
    // Serializing plain data structures with string keys cannot fail.
    hasher.update(serde_json::to_vec(config).unwrap_or_default());
    hasher.update([0u8]);
    hasher.update(serde_json::to_vec(secrets).unwrap_or_default());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// The public half of a snapshot, published in ConfigMaps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    pub schema_version: u32,
    /// Gateway name the snapshot was compiled for.
    pub gateway: String,
    pub routes: Vec<RouteConfig>,
    pub keys: Vec<KeyConfig>,
    pub budgets: Vec<BudgetConfig>,
}

/// The secret half of a snapshot, published only in Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySecrets {
    /// Provider credentials by credential id (see [`credential_id`]).
    pub credentials: BTreeMap<String, SecretValue>,
    /// SHA-256 hashes of the accepted values of each virtual key, by key id.
    pub key_hashes: BTreeMap<String, Vec<KeyHash>>,
}

/// Id under which a Secret key's value is published: `namespace/secret/key`.
pub fn credential_id(namespace: &str, secret: &str, key: &str) -> String {
    format!("{namespace}/{secret}/{key}")
}

/// Id of a namespaced resource in the snapshot: `namespace/name`.
pub fn object_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A secret string whose `Debug` never shows the value. It serializes to the value, and is only ever
/// serialized into a Secret.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is sent upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// One accepted hash of a virtual key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyHash {
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// The value stops working at this time (a previous key during its rotation grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
}

/// SHA-256 of a virtual key, as published in [`KeyHash::sha256`].
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A compiled route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// `namespace/name` of the LLMRoute.
    pub id: String,
    pub model: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub strategy: RoutingStrategy,
    /// Backends in the order the route lists them.
    pub backends: Vec<BackendConfig>,
    pub retry: RetryConfig,
    pub timeouts: TimeoutConfig,
    /// Absent when the breaker is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Budget ids charged by every request on this route.
    #[serde(default)]
    pub budgets: Vec<String>,
    #[serde(default)]
    pub defaults: RequestParameters,
    #[serde(default)]
    pub overrides: RequestParameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<PiiConfig>,
    /// Empty means any region.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<GuardrailsConfig>,
    /// Sticky weighted assignment (only with the `weighted` strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<StickinessConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowConfig>,
    /// Semantic layer of the cache (only with `cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_cache: Option<SemanticCacheConfig>,
}

/// Compiled semantic cache policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SemanticCacheConfig {
    /// Model name of the embeddings route.
    pub embedding_model: String,
    /// Cosine similarity needed for a hit, in (0, 1].
    pub threshold: f64,
    pub max_entries: u64,
}

/// Compiled request guardrails of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_patterns: Vec<PiiPattern>,
}

/// Compiled sticky assignment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StickinessConfig {
    pub by: StickyBy,
    /// Lowercase header name (with `by: header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// Compiled shadow traffic policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowConfig {
    pub backend: BackendConfig,
    /// Share of requests mirrored, 1–100.
    pub percent: u32,
}

/// A compiled backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfig {
    pub name: String,
    pub provider: Provider,
    pub model: String,
    /// Base URL, with the provider default filled in.
    pub endpoint: String,
    /// Credential id in [`GatewaySecrets::credentials`]; absent for unauthenticated upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    pub weight: u32,
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Absent when neither the route nor the built-in table prices the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PriceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSettings>,
}

/// US dollars per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PriceConfig {
    pub input_per_million: f64,
    pub output_per_million: f64,
    pub cached_input_per_million: f64,
}

/// Compiled retry policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    pub attempts: u32,
    pub retry_on: Vec<RetryOn>,
    #[serde(default)]
    pub provider_error_codes: Vec<String>,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub retry_after_cap_ms: u64,
    pub budget_percent: u32,
}

/// Compiled timeouts, in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    pub connect_ms: u64,
    pub first_byte_ms: u64,
    pub idle_ms: u64,
    pub total_ms: u64,
}

/// Compiled circuit breaker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub error_rate_percent: u32,
    pub min_requests: u32,
    pub window_ms: u64,
    pub open_for_ms: u64,
}

/// When a hedge is sent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum HedgeDelay {
    /// A fixed delay.
    Fixed { ms: u64 },
    /// The primary backend's observed 95th percentile latency.
    P95,
}

/// Compiled hedging policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HedgeConfig {
    pub delay: HedgeDelay,
    pub max_percent: u32,
}

/// Compiled cache policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CacheConfig {
    pub ttl_ms: u64,
    pub scope: CacheScope,
    pub max_entries: u64,
}

/// Compiled rate limit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

/// Compiled PII policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PiiConfig {
    pub mode: PiiMode,
    /// Detectors to run (all built-ins when the route listed none).
    pub entities: Vec<PiiEntity>,
    #[serde(default)]
    pub custom_patterns: Vec<PiiPattern>,
    pub responses: bool,
}

/// A compiled virtual key (its hashes live in [`GatewaySecrets::key_hashes`] under the same id).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyConfig {
    /// `namespace/name` of the VirtualKey.
    pub id: String,
    /// Recognisable prefix of the key, for logs and errors.
    pub prefix: String,
    /// Model names the key may call; empty allows all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Model names the key may not call (any name of a route denies the route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Budget ids charged by every request with this key.
    #[serde(default)]
    pub budgets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub disabled: bool,
}

/// A compiled budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetConfig {
    /// `namespace/name` of the Budget.
    pub id: String,
    #[serde(rename = "limitUSD")]
    pub limit_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit: Option<u64>,
    pub window: BudgetWindow,
    pub time_zone: String,
    pub thresholds: Vec<u32>,
    pub action: BudgetAction,
    pub stop_streams: bool,
    pub failure_mode: FailureMode,
}
