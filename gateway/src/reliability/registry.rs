//! Reliability state that outlives configuration reloads: per backend (breaker, retry budget, latency)
//! and per route (hedge budget), keyed by route id and backend name.
//!
//! A reload that keeps a backend keeps its state, even when thresholds change (configuration is passed
//! on every call, never stored). A backend whose upstream changed under the same name (provider,
//! endpoint, model, deployment or credential reference) starts afresh: the old state described another
//! upstream. State of removed routes and backends is dropped by [`ReliabilityRegistry::retain`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sluice_crds::config::BackendConfig;
use tokio::time::Instant;

use super::breaker::{BreakerStats, CircuitBreaker};
use super::hedge::HedgeBudget;
use super::latency::LatencyHistogram;
use super::retry_budget::RetryBudget;

/// Live reliability state of one backend of one route.
#[derive(Debug, Default)]
pub struct BackendReliability {
    pub breaker: CircuitBreaker,
    /// Charged by requests whose first attempt went to this backend.
    pub retry_budget: RetryBudget,
    /// Time until an attempt succeeded (a complete body, or a stream's first event).
    pub latency: LatencyHistogram,
}

/// What route status and metrics show about a backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendHealth {
    pub breaker: BreakerStats,
    /// `None` until enough samples.
    pub p50: Option<std::time::Duration>,
    pub p95: Option<std::time::Duration>,
}

impl BackendReliability {
    /// A snapshot for status and metrics.
    pub fn health(&self, now: Instant) -> BackendHealth {
        BackendHealth {
            breaker: self.breaker.stats(now),
            p50: self.latency.quantile(0.5),
            p95: self.latency.quantile(0.95),
        }
    }
}

/// Live reliability state of one route.
#[derive(Debug, Default)]
pub struct RouteReliability {
    pub hedge_budget: HedgeBudget,
}

/// Hands out state objects, reusing those of the previous configuration.
#[derive(Debug, Default)]
pub struct ReliabilityRegistry {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// By (route id, backend name): the upstream identity the state belongs to, and the state.
    backends: HashMap<(String, String), (u64, Arc<BackendReliability>)>,
    routes: HashMap<String, Arc<RouteReliability>>,
}

impl ReliabilityRegistry {
    /// The state of `backend` in route `route`: the existing one unless its upstream changed.
    pub fn backend(&self, route: &str, backend: &BackendConfig) -> Arc<BackendReliability> {
        let identity = upstream_identity(backend);
        let mut entries = self.lock();
        let entry = entries
            .backends
            .entry((route.to_owned(), backend.name.clone()))
            .or_insert_with(|| (identity, Arc::default()));
        if entry.0 != identity {
            *entry = (identity, Arc::default());
        }
        entry.1.clone()
    }

    /// The state of route `route`.
    pub fn route(&self, route: &str) -> Arc<RouteReliability> {
        self.lock()
            .routes
            .entry(route.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets state of routes and backends that the now-running configuration no longer has.
    /// `live_backends` is every (route id, backend name) of it.
    pub fn retain(&self, live_backends: &[(String, String)]) {
        let live: HashSet<&(String, String)> = live_backends.iter().collect();
        let live_routes: HashSet<&str> = live_backends
            .iter()
            .map(|(route, _)| route.as_str())
            .collect();
        let mut entries = self.lock();
        entries.backends.retain(|key, _| live.contains(key));
        entries
            .routes
            .retain(|route, _| live_routes.contains(route.as_str()));
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Maps of `Arc`s: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What makes a backend the same upstream across reloads. Weight, priority, pricing and region only
/// steer traffic, so changing them keeps the state. A process-local hash: nothing persists it.
fn upstream_identity(backend: &BackendConfig) -> u64 {
    let mut hasher = DefaultHasher::new();
    backend.provider.hash(&mut hasher);
    backend.endpoint.hash(&mut hasher);
    backend.model.hash(&mut hasher);
    backend.credential.hash(&mut hasher);
    format!("{:?}", backend.azure).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use sluice_crds::v1alpha1::Provider;

    use super::*;

    fn backend(name: &str, endpoint: &str, weight: u32) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            provider: Provider::Openai,
            model: "gpt-4o".into(),
            endpoint: endpoint.into(),
            credential: Some("ns/keys/openai".into()),
            weight,
            priority: 0,
            region: None,
            context_window: None,
            pricing: None,
            azure: None,
        }
    }

    #[test]
    fn state_survives_a_reload_that_keeps_the_upstream() {
        let registry = ReliabilityRegistry::default();
        let first = registry.backend("ns/r", &backend("a", "https://a", 1));
        assert!(Arc::ptr_eq(
            &first,
            &registry.backend("ns/r", &backend("a", "https://a", 9)),
        ));
        assert!(
            !Arc::ptr_eq(
                &first,
                &registry.backend("ns/other", &backend("a", "https://a", 1))
            ),
            "keyed by route too"
        );
        let route = registry.route("ns/r");
        assert!(Arc::ptr_eq(&route, &registry.route("ns/r")));
    }

    #[test]
    fn a_changed_upstream_starts_afresh() {
        let registry = ReliabilityRegistry::default();
        let first = registry.backend("ns/r", &backend("a", "https://a", 1));
        let moved = registry.backend("ns/r", &backend("a", "https://b", 1));
        assert!(!Arc::ptr_eq(&first, &moved));
        assert!(Arc::ptr_eq(
            &moved,
            &registry.backend("ns/r", &backend("a", "https://b", 1)),
        ));
    }

    #[test]
    fn removed_routes_and_backends_are_pruned() {
        let registry = ReliabilityRegistry::default();
        let kept = registry.backend("ns/r", &backend("a", "https://a", 1));
        let dropped = registry.backend("ns/r", &backend("b", "https://b", 1));
        let route = registry.route("ns/r");
        let gone_route = registry.route("ns/gone");
        registry.retain(&[("ns/r".into(), "a".into())]);
        assert!(Arc::ptr_eq(
            &kept,
            &registry.backend("ns/r", &backend("a", "https://a", 1)),
        ));
        assert!(!Arc::ptr_eq(
            &dropped,
            &registry.backend("ns/r", &backend("b", "https://b", 1)),
        ));
        assert!(Arc::ptr_eq(&route, &registry.route("ns/r")));
        assert!(!Arc::ptr_eq(&gone_route, &registry.route("ns/gone")));
    }
}
