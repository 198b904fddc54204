//! Reliability metric families (breaker state, retries, hedges, refusals), registered by
//! [`crate::metrics::Metrics`] and resolved per backend when a configuration is built.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reliability::BreakerState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    route: String,
    backend: String,
}

/// The families, registered once.
#[derive(Debug, Clone, Default)]
pub struct ReliabilityFamilies {
    circuit_state: Family<BackendLabels, Gauge>,
    retries: Family<BackendLabels, Counter>,
    hedges: Family<BackendLabels, Counter>,
    hedge_wins: Family<BackendLabels, Counter>,
    budget_refusals: Family<BackendLabels, Counter>,
    circuit_rejections: Family<BackendLabels, Counter>,
}

impl ReliabilityFamilies {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self::default();
        registry.register(
            "sluice_backend_circuit_state",
            "Circuit breaker state per route and backend: 0 closed, 1 half-open, 2 open",
            families.circuit_state.clone(),
        );
        registry.register(
            "sluice_upstream_retries",
            "Retries sent to a backend (attempts after a request's first)",
            families.retries.clone(),
        );
        registry.register(
            "sluice_upstream_hedges",
            "Hedged attempts sent to a backend while the first attempt was still pending",
            families.hedges.clone(),
        );
        registry.register(
            "sluice_upstream_hedge_wins",
            "Hedged attempts that answered before the first attempt",
            families.hedge_wins.clone(),
        );
        registry.register(
            "sluice_retry_budget_exhausted",
            "Retries refused because the first backend's retry budget was spent",
            families.budget_refusals.clone(),
        );
        registry.register(
            "sluice_circuit_open_rejections",
            "Attempts not sent because the backend's circuit breaker was open",
            families.circuit_rejections.clone(),
        );
        families
    }

    /// Handles for one backend of one route; the gauge starts at closed.
    pub fn backend(&self, route: &Arc<str>, backend: &Arc<str>) -> BackendReliabilityMetrics {
        let labels = BackendLabels {
            route: route.to_string(),
            backend: backend.to_string(),
        };
        BackendReliabilityMetrics {
            circuit_state: self.circuit_state.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
            hedges: self.hedges.get_or_create_owned(&labels),
            hedge_wins: self.hedge_wins.get_or_create_owned(&labels),
            budget_refusals: self.budget_refusals.get_or_create_owned(&labels),
            circuit_rejections: self.circuit_rejections.get_or_create_owned(&labels),
        }
    }
}

/// One backend's reliability metric handles.
#[derive(Debug, Clone)]
pub struct BackendReliabilityMetrics {
    circuit_state: Gauge,
    retries: Counter,
    hedges: Counter,
    hedge_wins: Counter,
    budget_refusals: Counter,
    circuit_rejections: Counter,
}

impl BackendReliabilityMetrics {
    /// Publishes the breaker's state (called after every permit and outcome, an atomic store).
    pub fn set_circuit_state(&self, state: BreakerState) {
        self.circuit_state.set(state.as_number());
    }

    pub fn count_retry(&self) {
        self.retries.inc();
    }

    pub fn count_hedge(&self) {
        self.hedges.inc();
    }

    pub fn count_hedge_win(&self) {
        self.hedge_wins.inc();
    }

    pub fn count_budget_refusal(&self) {
        self.budget_refusals.inc();
    }

    pub fn count_circuit_rejection(&self) {
        self.circuit_rejections.inc();
    }
}
