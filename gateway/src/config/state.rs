//! Routing memory that outlives configuration reloads: latency averages per backend, round-robin counters
//! per route. Keyed by route id and backend name, so a reload that keeps a backend keeps its history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::routing::{LatencyEwma, SmoothWeighted};

/// Live state of one backend of one route (later: circuit breaker, retry budget).
#[derive(Debug, Default)]
pub struct BackendState {
    pub latency: LatencyEwma,
}

/// Live state of one route.
#[derive(Debug, Default)]
pub struct RouteState {
    pub weighted: SmoothWeighted,
}

/// Hands out state objects, reusing those of the previous configuration.
#[derive(Debug, Default)]
pub struct StateRegistry {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    backends: HashMap<(String, String), Arc<BackendState>>,
    /// Route state is reused only when the backend list is unchanged: round-robin counters are per position.
    routes: HashMap<String, (Vec<String>, Arc<RouteState>)>,
}

impl StateRegistry {
    /// The state of backend `backend` of route `route`.
    pub fn backend(&self, route: &str, backend: &str) -> Arc<BackendState> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .backends
            .entry((route.to_owned(), backend.to_owned()))
            .or_default()
            .clone()
    }

    /// The state of route `route` whose backends are `backend_names`, in order.
    pub fn route(&self, route: &str, backend_names: &[String]) -> Arc<RouteState> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.routes.get(route) {
            Some((names, state)) if names == backend_names => state.clone(),
            _ => {
                let state = Arc::new(RouteState::default());
                inner
                    .routes
                    .insert(route.to_owned(), (backend_names.to_vec(), state.clone()));
                state
            }
        }
    }

    /// Forgets state of routes and backends that the now-running configuration no longer has.
    pub fn retain(&self, live_backends: &[(String, String)]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let live: std::collections::HashSet<&(String, String)> = live_backends.iter().collect();
        inner.backends.retain(|key, _| live.contains(key));
        let live_routes: std::collections::HashSet<&str> = live_backends
            .iter()
            .map(|(route, _)| route.as_str())
            .collect();
        inner
            .routes
            .retain(|route, _| live_routes.contains(route.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn state_survives_a_rebuild_and_is_pruned_when_gone() {
        let registry = StateRegistry::default();
        let first = registry.backend("ns/r", "a");
        first.latency.observe(Duration::from_millis(5));
        assert!(Arc::ptr_eq(&first, &registry.backend("ns/r", "a")));
        let names = vec!["a".to_owned(), "b".to_owned()];
        let route = registry.route("ns/r", &names);
        assert!(Arc::ptr_eq(&route, &registry.route("ns/r", &names)));
        assert!(
            !Arc::ptr_eq(&route, &registry.route("ns/r", &names[..1])),
            "changed backend list resets counters"
        );
        registry.retain(&[("ns/other".into(), "x".into())]);
        assert!(!Arc::ptr_eq(&first, &registry.backend("ns/r", "a")));
    }
}
