//! The usage-report protocol between gateways and the operator: what a gateway pushes, and what the operator
//! acknowledges (global spend and this gateway's budget grants).
//!
//! # Exactly once
//!
//! A gateway process is one [`Reporter`]: its pod name plus an `instance` id drawn at process start, so a
//! restarted pod is a new reporter. Reports carry a `sequence` that starts at 1 and grows by one per report.
//! A reporter has at most one report in flight and resends it, unchanged, until it is acknowledged. The
//! operator folds a report and records the reporter's sequence watermark in one atomic write, then answers;
//! a report at or below the watermark is acknowledged as a duplicate and not counted again.
//!
//! # Money
//!
//! Money is counted in integer nano-dollars ([`NanoUsd`]) so totals are exact sums, independent of the
//! order in which reports are folded: one token priced at $2.50 per million tokens is 2,500 nano-dollars.
//!
//! # Budget grants
//!
//! Every budget the gateway enforces gets a [`BudgetGrant`] in each acknowledgement: the global spend folded
//! so far in the current window, and `grant_nano_usd`, how much more this reporter may admit (reserved plus
//! settled but not yet reported) until its next acknowledgement. The operator keeps the sum of outstanding
//! grants of all reporters within the budget's remaining amount, so replicas cannot jointly overspend by more
//! than their reservations under-estimated.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Path of the operator's usage endpoint (`POST`, JSON [`UsageReport`] → JSON [`UsageAck`]).
pub const REPORT_PATH: &str = "/v1/usage/reports";
/// Default port of the operator's usage endpoint.
pub const DEFAULT_REPORT_PORT: u16 = 8095;
/// Version of this protocol, sent in every report; the operator refuses other versions with 400.
pub const PROTOCOL_VERSION: u32 = 1;

/// Integer nano-dollars (1e-9 USD).
pub type NanoUsd = u64;

/// Nano-dollars per US dollar.
pub const NANO_PER_USD: f64 = 1e9;

/// Rounds a dollar amount to nano-dollars (negative and non-finite amounts count as zero).
pub fn nano_usd(usd: f64) -> NanoUsd {
    if usd.is_finite() && usd > 0.0 {
        // Saturating float-to-int conversion is the intent: no real spend reaches 18 billion dollars.
        (usd * NANO_PER_USD).round() as NanoUsd
    } else {
        0
    }
}

/// Nano-dollars back to dollars, for status and metrics.
pub fn usd(nano: NanoUsd) -> f64 {
    nano as f64 / NANO_PER_USD
}

/// Who sends a report: one gateway process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Reporter {
    /// Pod name (or host name outside Kubernetes).
    pub pod: String,
    /// Random id drawn when the process started.
    pub instance: String,
}

/// One batch of usage and health from a gateway process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub protocol: u32,
    pub reporter: Reporter,
    /// 1, 2, 3, … per reporter; resent unchanged until acknowledged.
    pub sequence: u64,
    /// The gateway (`spec.gateway`) whose configuration the reporter serves.
    pub gateway: String,
    /// Hash of the configuration snapshot the reporter runs.
    pub config_hash: String,
    pub sent_at: DateTime<Utc>,
    /// The reporter is shutting down and will not report again: the operator may release its grants.
    #[serde(default)]
    pub last: bool,
    /// Usage since the previous report, one entry per (key, route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<UsageDelta>,
    /// Backend health observed during the interval, one entry per (route, backend) that saw traffic or is
    /// not closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendHealthReport>,
    /// Budgets the reporter enforces and wants grants for (ids), including ones with no usage yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<String>,
}

/// Usage of one virtual key on one route during a report interval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageDelta {
    /// `namespace/name` of the VirtualKey.
    pub key: String,
    /// `namespace/name` of the LLMRoute.
    pub route: String,
    /// Budget ids charged for this usage (the key's and the route's), as the reporter's configuration
    /// resolved them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<String>,
    pub requests: u64,
    /// Requests that failed (no billable answer).
    #[serde(default)]
    pub failed_requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Of the tokens above, how many were estimated because the provider reported none.
    #[serde(default)]
    pub estimated_tokens: u64,
    /// Billable cost (cache hits excluded).
    pub cost_nano_usd: NanoUsd,
    /// Requests answered from the cache (not billed).
    #[serde(default)]
    pub cache_hits: u64,
    /// What the cache hits would have cost.
    #[serde(default)]
    pub saved_nano_usd: NanoUsd,
    /// When the last of these requests finished.
    pub last_used: DateTime<Utc>,
}

/// Circuit state of a backend, as the gateway's breaker sees it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CircuitState {
    #[default]
    Closed,
    HalfOpen,
    Open,
}

/// Health of one backend of one route during a report interval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendHealthReport {
    /// `namespace/name` of the LLMRoute.
    pub route: String,
    /// Backend name within the route.
    pub backend: String,
    pub circuit: CircuitState,
    /// Upstream attempts during the interval.
    pub attempts: u64,
    /// Of those, failed ones.
    pub failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<f64>,
    /// Class of the last failure (e.g. `timeout`, `upstream_5xx`): never a provider message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<DateTime<Utc>>,
}

/// The operator's answer to a report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageAck {
    /// The sequence acknowledged.
    pub sequence: u64,
    /// The report had been folded before; it was not counted again.
    #[serde(default)]
    pub duplicate: bool,
    /// Global state of every budget the reporter asked about (unknown ids are left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetGrant>,
}

/// Global spend of one budget in its current window, and this reporter's grant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetGrant {
    pub id: String,
    pub window_start: DateTime<Utc>,
    /// `None` for a total budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<DateTime<Utc>>,
    /// Spend folded from every reporter in this window.
    pub spent_nano_usd: NanoUsd,
    pub limit_nano_usd: NanoUsd,
    /// Tokens folded in this window.
    #[serde(default)]
    pub tokens: u64,
    /// How much more this reporter may admit (reserved + settled but unreported) until its next
    /// acknowledgement.
    pub grant_nano_usd: NanoUsd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_through_nano_dollars() {
        assert_eq!(nano_usd(2.5e-6), 2_500);
        assert_eq!(nano_usd(-1.0), 0);
        assert_eq!(nano_usd(f64::NAN), 0);
        assert_eq!(nano_usd(12.345_678_9), 12_345_678_900);
        assert!((usd(12_345_678_900) - 12.345_678_9).abs() < 1e-12);
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let report = UsageReport {
            protocol: PROTOCOL_VERSION,
            reporter: Reporter {
                pod: "gw-0".into(),
                instance: "a1".into(),
            },
            sequence: 7,
            gateway: "default".into(),
            config_hash: "h".into(),
            sent_at: DateTime::<Utc>::UNIX_EPOCH,
            last: false,
            usage: vec![UsageDelta {
                key: "team/k".into(),
                route: "team/r".into(),
                budgets: vec!["team/b".into()],
                requests: 2,
                input_tokens: 10,
                output_tokens: 5,
                cost_nano_usd: 1_234,
                last_used: DateTime::<Utc>::UNIX_EPOCH,
                ..UsageDelta::default()
            }],
            backends: vec![],
            budgets: vec!["team/b".into()],
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(json.contains("\"costNanoUsd\":1234"), "{json}");
        let back: UsageReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, report);
    }
}
