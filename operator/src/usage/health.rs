//! Merges the reporters' views of one backend into the health `LLMRoute.status` shows.
//!
//! Circuit: the worst any gateway sees (one gateway with an open breaker means the backend is failing
//! for its clients). Error rate: failed attempts over all attempts in the reporters' last intervals.
//! p50: the attempts-weighted mean of the reporters' medians (an approximation: medians do not merge
//! exactly); p95: the highest reporter p95, so a tail seen anywhere shows.

use sluice_crds::usage::CircuitState;
use sluice_crds::v1alpha1::BackendHealth;

use super::ledger::BackendLedger;
use crate::controllers::conditions::to_time;

/// The status entry of backend `name` from what the ledger holds.
pub fn merge(name: &str, ledger: &BackendLedger) -> BackendHealth {
    let reporters = || ledger.reporters.values();
    let circuit = reporters()
        .map(|health| health.circuit)
        .max_by_key(|circuit| severity(*circuit))
        .unwrap_or(CircuitState::Closed);
    let attempts: u64 = reporters().map(|health| health.attempts).sum();
    let failures: u64 = reporters().map(|health| health.failures).sum();
    let weighted: Vec<(f64, f64)> = reporters()
        .filter_map(|health| Some((health.p50_latency_ms?, health.attempts.max(1) as f64)))
        .collect();
    let weight: f64 = weighted.iter().map(|(_, weight)| weight).sum();
    let p50 = (weight > 0.0).then(|| {
        round_ms(
            weighted
                .iter()
                .map(|(p50, weight)| p50 * weight)
                .sum::<f64>()
                / weight,
        )
    });
    let p95 = reporters()
        .filter_map(|health| health.p95_latency_ms)
        .reduce(f64::max)
        .map(round_ms);
    BackendHealth {
        name: name.to_owned(),
        circuit: Some(circuit_name(circuit).to_owned()),
        p50_latency_ms: p50,
        p95_latency_ms: p95,
        error_rate: (attempts > 0).then(|| round_rate(failures as f64 / attempts as f64)),
        last_error: ledger.last_error.clone(),
        last_error_time: ledger.last_error_time.map(to_time),
    }
}

/// Whether clients can be served by the backend: its circuit is not open.
pub fn is_ready(health: &BackendHealth) -> bool {
    health.circuit.as_deref() != Some(circuit_name(CircuitState::Open))
}

fn severity(circuit: CircuitState) -> u8 {
    match circuit {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

/// The names the CRD documents: Closed, Open or HalfOpen.
fn circuit_name(circuit: CircuitState) -> &'static str {
    match circuit {
        CircuitState::Closed => "Closed",
        CircuitState::HalfOpen => "HalfOpen",
        CircuitState::Open => "Open",
    }
}

/// Tenths of a millisecond are enough, and stop status patches for noise.
fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

fn round_rate(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone as _, Utc};

    use super::*;
    use crate::usage::ledger::ReporterHealth;

    fn health(
        circuit: CircuitState,
        attempts: u64,
        failures: u64,
        p50: f64,
        p95: f64,
    ) -> ReporterHealth {
        ReporterHealth {
            circuit,
            attempts,
            failures,
            p50_latency_ms: Some(p50),
            p95_latency_ms: Some(p95),
            at: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .expect("time"),
        }
    }

    #[test]
    fn the_worst_circuit_and_the_pooled_error_rate_show() {
        let ledger = BackendLedger {
            last_error: Some("timeout".into()),
            last_error_time: None,
            reporters: BTreeMap::from([
                (
                    "a".to_owned(),
                    health(CircuitState::Closed, 30, 0, 100.0, 200.0),
                ),
                (
                    "b".to_owned(),
                    health(CircuitState::Open, 10, 10, 500.0, 900.0),
                ),
            ]),
        };
        let merged = merge("primary", &ledger);
        assert_eq!(merged.circuit.as_deref(), Some("Open"));
        assert_eq!(merged.error_rate, Some(0.25));
        assert_eq!(merged.p50_latency_ms, Some(200.0));
        assert_eq!(merged.p95_latency_ms, Some(900.0));
        assert_eq!(merged.last_error.as_deref(), Some("timeout"));
        assert!(!is_ready(&merged));
        let idle = merge("idle", &BackendLedger::default());
        assert_eq!(
            (idle.circuit.as_deref(), idle.error_rate),
            (Some("Closed"), None)
        );
        assert!(is_ready(&idle));
    }
}
