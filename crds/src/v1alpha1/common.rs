//! Types shared by several kinds: Secret and Budget references, rate limits, usage totals.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) fn default_gateway() -> String {
    crate::DEFAULT_GATEWAY.to_owned()
}

/// A reference to one key of a Secret. Provider keys and bring-your-own virtual keys are only ever
/// read from Secrets, never written inline in a resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.name != '' && self.key != ''").message("a Secret reference must name both the Secret and the key"))]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key within the Secret's `data` whose value is used.
    #[schemars(length(max = 253))]
    pub key: String,
    /// Namespace of the Secret. Only the resource's own namespace is permitted; a reference to another
    /// namespace is reported in the `ResolvedRefs` condition and not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a `Budget` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetRef {
    /// Name of the Budget.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Request and token rate limits over a sliding minute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.requestsPerMinute) || has(self.tokensPerMinute)").message("a rate limit needs requestsPerMinute, tokensPerMinute or both"))]
pub struct RateLimit {
    /// Requests admitted per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<i64>,
    /// Tokens (prompt estimate plus `max_tokens`, settled with the real count) admitted per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<i64>,
}

/// Usage totals that gateways report back into status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// Requests served.
    #[serde(default)]
    pub requests: i64,
    /// Prompt (input) tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Completion (output) tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Cost in US dollars at the route's pricing.
    #[serde(default, rename = "costUSD")]
    pub cost_usd: f64,
    /// When the last request was served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Time>,
}
