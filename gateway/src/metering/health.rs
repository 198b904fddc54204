//! Backend health for usage reports: circuit state and latency quantiles from each backend's reliability
//! state, attempts and failures since the previous report from its attempt tally.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use sluice_crds::usage::{BackendHealthReport, CircuitState};
use tokio::time::Instant;

use crate::config::RuntimeConfig;
use crate::reliability::BreakerState;

/// Remembers the attempt counters of the previous report, to report differences.
#[derive(Debug, Default)]
pub struct HealthTracker {
    previous: HashMap<(String, String), (u64, u64)>,
}

fn circuit(state: BreakerState) -> CircuitState {
    match state {
        BreakerState::Closed => CircuitState::Closed,
        BreakerState::HalfOpen => CircuitState::HalfOpen,
        BreakerState::Open => CircuitState::Open,
    }
}

impl HealthTracker {
    /// One entry per backend that saw attempts since the last call or whose circuit is not closed.
    pub fn collect(&mut self, config: &RuntimeConfig, now: Instant) -> Vec<BackendHealthReport> {
        let mut reports = Vec::new();
        let mut seen = HashMap::with_capacity(self.previous.len());
        for route in &config.routes {
            for backend in &route.backends {
                let tally = &backend.metrics.tally;
                let totals = (
                    tally.attempts.load(Ordering::Relaxed),
                    tally.failures.load(Ordering::Relaxed),
                );
                let id = (route.id.to_string(), backend.name.to_string());
                let (attempts, failures) = match self.previous.get(&id) {
                    // Counters restart when a backend's metrics were rebuilt under a new upstream.
                    Some(&(a, f)) if totals.0 >= a => (totals.0 - a, totals.1.saturating_sub(f)),
                    _ => totals,
                };
                seen.insert(id, totals);
                let health = backend.reliability.health(now);
                let state = circuit(health.breaker.state);
                if attempts == 0 && state == CircuitState::Closed {
                    continue;
                }
                let last_failure = *tally
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reports.push(BackendHealthReport {
                    route: route.id.to_string(),
                    backend: backend.name.to_string(),
                    circuit: state,
                    attempts,
                    failures,
                    p50_latency_ms: health.p50.map(|d| d.as_secs_f64() * 1000.0),
                    p95_latency_ms: health.p95.map(|d| d.as_secs_f64() * 1000.0),
                    last_error: last_failure.map(|(class, _)| class.to_owned()),
                    last_error_time: last_failure.map(|(_, at)| at),
                });
            }
        }
        self.previous = seen;
        reports
    }
}
