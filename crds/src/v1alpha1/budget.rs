//! `Budget`: a money (and optionally token) limit over a calendar window.
#![expect(
    clippy::duplicated_attributes,
    reason = "kube's printcolumn(...) entries legitimately repeat type_ = \"...\""
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::default_gateway;

/// A spending limit over a calendar window, charged by every request whose key or route refers to it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Budget",
    plural = "budgets",
    namespaced,
    status = "BudgetStatus",
    shortname = "bgt",
    category = "sluice",
    selectable = ".spec.gateway",
    doc = "Budget limits spend in US dollars (and optionally tokens) over a daily, weekly, monthly or total window.",
    printcolumn(
        name = "Spent",
        type_ = "number",
        json_path = ".status.spentUSD",
        description = "Spend in the current window, US dollars"
    ),
    printcolumn(
        name = "Limit",
        type_ = "number",
        json_path = ".spec.limitUSD",
        description = "Limit in US dollars"
    ),
    printcolumn(name = "Percent", type_ = "integer", json_path = ".status.percent"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Window", type_ = "string", json_path = ".spec.window"),
    printcolumn(
        name = "Resets",
        type_ = "string",
        json_path = ".status.resetsAt",
        description = "When the window resets"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Name of the Sluice gateway that enforces this budget.
    #[serde(default = "default_gateway")]
    #[schemars(length(min = 1, max = 63))]
    pub gateway: String,
    /// Limit in US dollars for one window.
    #[serde(rename = "limitUSD")]
    #[schemars(range(min = 0.0))]
    pub limit_usd: f64,
    /// Optional limit on tokens (input plus output) for one window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub token_limit: Option<i64>,
    /// Calendar window: daily, weekly (from Monday), monthly or total (never resets).
    #[serde(default)]
    pub window: BudgetWindow,
    /// IANA time zone in which windows start, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$")
    )]
    pub time_zone: String,
    /// Percentages of the limit at which an Event is raised, ascending, each within 0-100.
    #[serde(default = "default_thresholds")]
    #[x_kube(validation = Rule::new("self.isSorted() && self.all(t, self.exists_one(u, u == t))").message("thresholds must be strictly ascending"))]
    #[schemars(length(max = 10), inner(range(min = 0, max = 100)))]
    pub thresholds: Vec<i32>,
    /// What happens when the limit is reached: block (refuse with 429 budget_exceeded) or alert-only.
    #[serde(default)]
    pub action: BudgetAction,
    /// Stop a streamed response that crosses the limit mid-stream (action block only).
    #[serde(default)]
    pub stop_streams: bool,
    /// When gateways cannot reach the operator: open keeps serving on the last known spend plus local
    /// usage (enforcing locally); closed refuses requests charged to this budget until it is reachable.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}
fn default_thresholds() -> Vec<i32> {
    vec![50, 80, 100]
}

/// Budget window.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetWindow {
    Daily,
    Weekly,
    #[default]
    Monthly,
    Total,
}

/// Budget action at the limit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetAction {
    /// Refuse requests with 429 `budget_exceeded` once the limit is reached.
    #[default]
    Block,
    /// Raise Events and conditions only.
    AlertOnly,
}

/// Behaviour while the operator is unreachable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Keep serving and enforce on locally known spend.
    #[default]
    Open,
    /// Refuse requests charged to the budget.
    Closed,
}

/// State of a budget in its current window.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BudgetState {
    /// Below the first threshold below 100 %.
    #[default]
    Ok,
    /// A threshold below 100 % was crossed.
    Warning,
    /// The limit was reached.
    Exceeded,
}

/// Observed state of a Budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs, Ready and ThresholdReached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Spend in the current window, US dollars.
    #[serde(default, rename = "spentUSD")]
    pub spent_usd: f64,
    /// Limit minus spend, US dollars (never negative).
    #[serde(default, rename = "remainingUSD")]
    pub remaining_usd: f64,
    /// Tokens used in the current window.
    #[serde(default)]
    pub tokens: i64,
    /// Spend as a whole percentage of the limit.
    #[serde(default)]
    pub percent: i32,
    /// Ok, Warning or Exceeded.
    #[serde(default)]
    pub state: BudgetState,
    /// Start of the current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Time>,
    /// When the current window ends (absent for total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Time>,
    /// Highest threshold already announced in this window, so each fires once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_threshold: Option<i32>,
}
