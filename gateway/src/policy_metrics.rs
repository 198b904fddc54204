//! Metrics of the response cache, PII detection and shadow traffic, registered with the gateway's registry.
//!
//! Labels stay low-cardinality: route id, backend name, entity kind, fixed outcome names. Shadow traffic has
//! families of its own so mirrored requests never show up in the client-facing request, token or cost
//! series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::CacheStatus;
use crate::pii::Tally;

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];
type Labels4 = [(&'static str, String); 4];
type CostCounter = Counter<f64, AtomicU64>;

fn shadow_histogram() -> Histogram {
    // 5 ms .. ~82 s, as the client-facing request duration.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Where PII was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// The families; cheap to share (each is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    cache_lookups: Family<Labels2, Counter>,
    cache_saved: Family<Labels1, CostCounter>,
    cache_saved_tokens: Family<Labels1, Counter>,
    cache_errors: Family<Labels2, Counter>,
    cache_semantic: Family<Labels2, Counter>,
    pii_findings: Family<Labels4, Counter>,
    shadow_requests: Family<Labels3, Counter>,
    shadow_duration: Family<Labels2, Histogram, fn() -> Histogram>,
    shadow_cost: Family<Labels2, CostCounter>,
}

impl PolicyMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            cache_lookups: Family::default(),
            cache_saved: Family::default(),
            cache_saved_tokens: Family::default(),
            cache_errors: Family::default(),
            cache_semantic: Family::default(),
            pii_findings: Family::default(),
            shadow_requests: Family::default(),
            shadow_duration: Family::new_with_constructor(shadow_histogram),
            shadow_cost: Family::default(),
        };
        registry.register(
            "sluice_cache_lookups",
            "Chat requests on cached routes by result (hit, miss, bypass)",
            metrics.cache_lookups.clone(),
        );
        registry.register(
            "sluice_cache_saved_usd",
            "Cost in US dollars of the responses served from the cache instead of upstream (not billed)",
            metrics.cache_saved.clone(),
        );
        registry.register(
            "sluice_cache_saved_tokens",
            "Tokens (input plus output) of the responses served from the cache",
            metrics.cache_saved_tokens.clone(),
        );
        registry.register(
            "sluice_cache_errors",
            "Cache backend failures by operation (get, put) and kind; each counts as a miss",
            metrics.cache_errors.clone(),
        );
        registry.register(
            "sluice_cache_semantic_lookups",
            "Semantic cache lookups after an exact miss by result (hit, miss, or why the prompt could not be embedded)",
            metrics.cache_semantic.clone(),
        );
        registry.register(
            "sluice_pii_findings",
            "PII entities found by route, entity kind, direction (request, response) and mode",
            metrics.pii_findings.clone(),
        );
        registry.register(
            "sluice_shadow_requests",
            "Mirrored (shadow) requests by route, shadow backend and outcome",
            metrics.shadow_requests.clone(),
        );
        registry.register(
            "sluice_shadow_duration_seconds",
            "Duration of mirrored requests (never part of any client's latency)",
            metrics.shadow_duration.clone(),
        );
        registry.register(
            "sluice_shadow_cost_usd",
            "Cost in US dollars of mirrored requests at the shadow backend's pricing",
            metrics.shadow_cost.clone(),
        );
        metrics
    }

    pub fn record_cache(&self, route: &str, status: CacheStatus) {
        self.cache_lookups
            .get_or_create(&[
                ("route", route.to_owned()),
                ("result", status.as_str().to_owned()),
            ])
            .inc();
    }

    /// A hit: what the stored response would have cost.
    pub fn record_saved(&self, route: &str, tokens: u64, cost_usd: Option<f64>) {
        let labels = [("route", route.to_owned())];
        self.cache_saved_tokens
            .get_or_create(&labels)
            .inc_by(tokens);
        if let Some(cost) = cost_usd {
            self.cache_saved.get_or_create(&labels).inc_by(cost);
        }
    }

    pub fn record_cache_error(&self, operation: &'static str, kind: &'static str) {
        self.cache_errors
            .get_or_create(&[
                ("operation", operation.to_owned()),
                ("kind", kind.to_owned()),
            ])
            .inc();
    }

    pub fn record_semantic(&self, route: &str, result: &'static str) {
        self.cache_semantic
            .get_or_create(&[("route", route.to_owned()), ("result", result.to_owned())])
            .inc();
    }

    pub fn record_pii(&self, route: &str, direction: Direction, mode: &'static str, tally: &Tally) {
        for (kind, count) in tally.iter() {
            self.pii_findings
                .get_or_create(&[
                    ("route", route.to_owned()),
                    ("entity", kind.name().to_owned()),
                    ("direction", direction.as_str().to_owned()),
                    ("mode", mode.to_owned()),
                ])
                .inc_by(count);
        }
    }

    /// A shadow request that was skipped (`outcome` says why) or finished.
    pub fn record_shadow(&self, route: &str, backend: &str, outcome: &'static str) {
        self.shadow_requests
            .get_or_create(&[
                ("route", route.to_owned()),
                ("backend", backend.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn record_shadow_done(
        &self,
        route: &str,
        backend: &str,
        elapsed: Duration,
        cost_usd: Option<f64>,
    ) {
        let labels = [("route", route.to_owned()), ("backend", backend.to_owned())];
        self.shadow_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(cost) = cost_usd {
            self.shadow_cost.get_or_create(&labels).inc_by(cost);
        }
    }
}
