//! `VirtualKey`: a caller identity that replaces provider keys, with scopes, limits and budgets.
#![expect(
    clippy::duplicated_attributes,
    reason = "kube's printcolumn(...) entries legitimately repeat type_ = \"...\""
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BudgetRef, RateLimit, SecretKeyRef, UsageTotals, default_gateway};

/// A key that applications present to the gateway instead of a provider key. The operator generates
/// the key into a Secret owned by this resource (or uses a bring-your-own Secret) and publishes only
/// its hash to the gateway.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "VirtualKey",
    plural = "virtualkeys",
    namespaced,
    status = "VirtualKeyStatus",
    shortname = "vkey",
    shortname = "vk",
    category = "sluice",
    selectable = ".spec.gateway",
    doc = "VirtualKey is a caller identity for the Sluice gateway, scoped to models, rate limits and budgets.",
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".status.keyPrefix",
        description = "First characters of the key, for identification"
    ),
    printcolumn(
        name = "Models",
        type_ = "string",
        json_path = ".spec.models",
        description = "Models the key may call (all when empty)"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".spec.expiresAt",
        description = "When the key stops working (a date column would show future times as <invalid>)"
    ),
    printcolumn(
        name = "Requests",
        type_ = "integer",
        json_path = ".status.usage.requests"
    ),
    printcolumn(
        name = "Cost",
        type_ = "number",
        json_path = ".status.usage.costUSD",
        description = "Spend in US dollars"
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
#[x_kube(validation = Rule::new("!has(oldSelf.rotation) || !has(self.rotation) || self.rotation.generation >= oldSelf.rotation.generation").message("rotation.generation can only increase").field_path(".rotation.generation"))]
#[x_kube(validation = Rule::new("!has(self.secretRef) || !has(self.rotation)").message("rotation applies to generated keys; rotate a bring-your-own key by updating its Secret").field_path(".rotation"))]
pub struct VirtualKeySpec {
    /// Name of the Sluice gateway that accepts this key.
    #[serde(default = "default_gateway")]
    #[schemars(length(min = 1, max = 63))]
    pub gateway: String,
    /// What the key is for, shown to operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Model names (route models or aliases) the key may call. Empty allows every route of the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub models: Vec<String>,
    /// Model names (route models or aliases) the key may not call, even when `models` allows them;
    /// naming any name of a route denies the whole route (403).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub denied_models: Vec<String>,
    /// Caps on what requests with this key may ask for, on top of the route's guardrails (the lower
    /// cap wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<KeyGuardrails>,
    /// Regions requests with this key may be sent to. Empty allows any region the route allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allowed_regions: Vec<String>,
    /// Rate limit for this key (per gateway fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Budgets (in this namespace) that every request with this key is charged against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub budget_refs: Vec<BudgetRef>,
    /// After this time the key is refused (401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Refuse the key (401) without deleting it.
    #[serde(default)]
    pub disabled: bool,
    /// Bring your own key: a Secret key holding the key value (at least 32 characters), e.g. from a
    /// sealed or external secret. When absent the operator generates the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Rotation of a generated key: raise `generation` to issue a new key; the previous key keeps
    /// working for `gracePeriod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<KeyRotation>,
}

/// Per-key caps (400 when a request exceeds one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyGuardrails {
    /// Most prompt tokens a request may carry (estimated at about 4 characters per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prompt_tokens: Option<i64>,
    /// Highest `max_tokens` a request may ask for; requests that set none get this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub max_tokens: Option<i64>,
}

/// Rotation of a generated key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// Raise to issue a new key. Can only increase.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub generation: i64,
    /// How long the previous key keeps working after a rotation.
    #[serde(default = "default_grace_period")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub grace_period: String,
}

fn default_grace_period() -> String {
    "24h".to_owned()
}

/// Observed state of a VirtualKey.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualKeyStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Secret (in this namespace) that holds the key under `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// First characters of the key, enough to recognise it; never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Rotation generation the current key was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_generation: Option<i64>,
    /// When the previous key stops working, while a rotation grace period runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_expires_at: Option<Time>,
    /// Usage totals reported by the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageTotals>,
}
