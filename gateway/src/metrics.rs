//! Prometheus metrics: the registry, the families, and per-backend handles resolved once per configuration.
//!
//! Labels are low-cardinality: route id, backend name, provider, status class, error class. The virtual key
//! id becomes a label only when `--metrics-key-labels` is set, because a fleet may have thousands of keys.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::{GatewayError, Origin};
use crate::metering::metrics::MeteringFamilies;
use crate::upstream::metrics::{BackendReliabilityMetrics, ReliabilityFamilies};

/// Content type of the `/metrics` exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the per-request families. `key` is only set when key labels are enabled, and omitted from
/// the exposition otherwise.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    pub route: Arc<str>,
    pub backend: Arc<str>,
    pub provider: &'static str,
    pub key: Option<Arc<str>>,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("route", &*self.route).encode(encoder.encode_label())?;
        ("backend", &*self.backend).encode(encoder.encode_label())?;
        ("provider", self.provider).encode(encoder.encode_label())?;
        if let Some(key) = &self.key {
            ("key", &**key).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Labels of `sluice_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct StatusLabels {
    pub request: RequestLabels,
    pub status_class: &'static str,
}

impl EncodeLabelSet for StatusLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        self.request.encode(encoder)?;
        ("status_class", self.status_class).encode(encoder.encode_label())
    }
}

/// Labels of `sluice_tokens_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TokenLabels {
    pub request: RequestLabels,
    /// `input`, `output` or `cached_input`.
    pub kind: &'static str,
}

impl EncodeLabelSet for TokenLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        self.request.encode(encoder)?;
        ("kind", self.kind).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    class: &'static str,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    route: String,
    backend: String,
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    source: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type CostCounter = Counter<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // 5 ms .. ~82 s: non-streaming completions take 0.3–30 s, whole streams up to minutes.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn first_token_histogram() -> Histogram {
    // 10 ms .. ~41 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// Status classes in `sluice_requests_total`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class label of a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => STATUS_CLASSES[0],
        200..=299 => STATUS_CLASSES[1],
        300..=399 => STATUS_CLASSES[2],
        400..=499 => STATUS_CLASSES[3],
        _ => STATUS_CLASSES[4],
    }
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    key_labels: bool,
    requests: Family<StatusLabels, Counter>,
    duration: HistogramFamily<RequestLabels>,
    first_token: HistogramFamily<RequestLabels>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<RequestLabels, CostCounter>,
    errors: Family<ErrorLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    in_flight: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    config_info: Family<HashLabels, Gauge>,
    config_hash: Mutex<Option<String>>,
    last_reload_success: Gauge<f64, AtomicU64>,
    reliability: ReliabilityFamilies,
    /// Rate-limit and budget refusals, budget spend, usage reports.
    pub metering: MeteringFamilies,
    /// Attempt outcomes per backend, kept across reloads, read by the usage reporter (not exported).
    tallies: Family<RequestLabels, Arc<AttemptTally>>,
    /// Cache, PII and shadow-traffic families.
    pub policy: crate::policy_metrics::PolicyMetrics,
}

impl Metrics {
    /// Creates and registers every family. `key_labels` adds the virtual key id to per-request series.
    pub fn new(key_labels: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabels, Counter>::default();
        let duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(duration_histogram);
        let first_token: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(first_token_histogram);
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<RequestLabels, CostCounter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let attempts = Family::<AttemptLabels, Counter>::default();
        let in_flight = Gauge::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let config_info = Family::<HashLabels, Gauge>::default();
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sluice_requests",
            "Requests answered, by route, backend, provider and status class",
            requests.clone(),
        );
        registry.register(
            "sluice_request_duration_seconds",
            "Time from receiving a request to the end of its response (whole stream included)",
            duration.clone(),
        );
        registry.register(
            "sluice_time_to_first_token_seconds",
            "Time from receiving a streaming request to sending its first content chunk",
            first_token.clone(),
        );
        registry.register(
            "sluice_tokens",
            "Tokens reported by providers, by kind (input, output, cached_input)",
            tokens.clone(),
        );
        registry.register(
            "sluice_cost_usd",
            "Cost in US dollars at the backend's pricing",
            cost.clone(),
        );
        registry.register(
            "sluice_errors",
            "Failed requests by error class and origin (client, upstream, gateway)",
            errors.clone(),
        );
        registry.register(
            "sluice_upstream_attempts",
            "Upstream attempts by backend and outcome",
            attempts.clone(),
        );
        registry.register(
            "sluice_in_flight_requests",
            "Requests being served, streams included",
            in_flight.clone(),
        );
        registry.register(
            "sluice_config_reload",
            "Configuration loads by source and result (success, unchanged, incomplete, error)",
            reloads.clone(),
        );
        registry.register(
            "sluice_config_info",
            "The configuration snapshot this gateway serves (value 1, hash as label)",
            config_info.clone(),
        );
        registry.register(
            "sluice_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration swap",
            last_reload_success.clone(),
        );
        let reliability = ReliabilityFamilies::register(&mut registry);
        let metering = MeteringFamilies::register(&mut registry);
        let policy = crate::policy_metrics::PolicyMetrics::register(&mut registry);
        Self {
            policy,
            reliability,
            metering,
            tallies: Family::default(),
            registry,
            key_labels,
            requests,
            duration,
            first_token,
            tokens,
            cost,
            errors,
            attempts,
            in_flight,
            reloads,
            config_info,
            config_hash: Mutex::new(None),
            last_reload_success,
        }
    }

    /// Whether per-request series carry the key id.
    pub fn key_labels(&self) -> bool {
        self.key_labels
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Handles for one backend, resolved when a configuration is built so the hot path does no label lookups.
    pub fn backend(
        &self,
        route: &Arc<str>,
        backend: &Arc<str>,
        provider: &'static str,
    ) -> BackendMetrics {
        let labels = RequestLabels {
            route: route.clone(),
            backend: backend.clone(),
            provider,
            key: None,
        };
        BackendMetrics {
            requests: STATUS_CLASSES.map(|status_class| {
                self.requests.get_or_create_owned(&StatusLabels {
                    request: labels.clone(),
                    status_class,
                })
            }),
            duration: self.duration.get_or_create_owned(&labels),
            first_token: self.first_token.get_or_create_owned(&labels),
            input_tokens: self.tokens.get_or_create_owned(&TokenLabels {
                request: labels.clone(),
                kind: "input",
            }),
            output_tokens: self.tokens.get_or_create_owned(&TokenLabels {
                request: labels.clone(),
                kind: "output",
            }),
            cached_tokens: self.tokens.get_or_create_owned(&TokenLabels {
                request: labels.clone(),
                kind: "cached_input",
            }),
            cost: self.cost.get_or_create_owned(&labels),
            attempt_success: self.attempts.get_or_create_owned(&AttemptLabels {
                route: route.to_string(),
                backend: backend.to_string(),
                provider,
                outcome: "success",
            }),
            reliability: self.reliability.backend(route, backend),
            tally: self.tallies.get_or_create_owned(&labels),
            labels,
        }
    }

    /// Counts a request that ended with `status`; `backend` is absent when it failed before routing.
    pub fn record_request(
        &self,
        backend: Option<&BackendMetrics>,
        key: Option<&Arc<str>>,
        status: u16,
        elapsed: Duration,
    ) {
        let class = status_class(status);
        match backend {
            Some(handles) if self.key_labels && key.is_some() => {
                let labels = RequestLabels {
                    key: key.cloned(),
                    ..handles.labels.clone()
                };
                self.requests
                    .get_or_create(&StatusLabels {
                        request: labels.clone(),
                        status_class: class,
                    })
                    .inc();
                self.duration
                    .get_or_create(&labels)
                    .observe(elapsed.as_secs_f64());
            }
            Some(handles) => {
                let index = STATUS_CLASSES.iter().position(|c| *c == class).unwrap_or(4);
                handles.requests[index].inc();
                handles.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                let labels = RequestLabels {
                    route: "".into(),
                    backend: "".into(),
                    provider: "",
                    key: None,
                };
                self.requests
                    .get_or_create(&StatusLabels {
                        request: labels,
                        status_class: class,
                    })
                    .inc();
            }
        }
    }

    /// Records a streaming request's time to first token.
    pub fn record_first_token(&self, backend: &BackendMetrics, elapsed: Duration) {
        backend.first_token.observe(elapsed.as_secs_f64());
    }

    /// Adds reported token usage and its cost.
    pub fn record_usage(
        &self,
        backend: &BackendMetrics,
        key: Option<&Arc<str>>,
        usage: &TokenCounts,
        cost_usd: Option<f64>,
    ) {
        if self.key_labels && key.is_some() {
            let labels = RequestLabels {
                key: key.cloned(),
                ..backend.labels.clone()
            };
            for (kind, value) in [
                ("input", usage.input),
                ("output", usage.output),
                ("cached_input", usage.cached_input),
            ] {
                self.tokens
                    .get_or_create(&TokenLabels {
                        request: labels.clone(),
                        kind,
                    })
                    .inc_by(value);
            }
            if let Some(cost) = cost_usd {
                self.cost.get_or_create(&labels).inc_by(cost);
            }
            return;
        }
        backend.input_tokens.inc_by(usage.input);
        backend.output_tokens.inc_by(usage.output);
        backend.cached_tokens.inc_by(usage.cached_input);
        if let Some(cost) = cost_usd {
            backend.cost.inc_by(cost);
        }
    }

    /// Counts a failed request by class and origin.
    pub fn record_error(&self, error: &GatewayError) {
        self.record_error_class(error.metric_label(), error.origin());
    }

    /// Counts a failure that has no [`GatewayError`] (a stream that broke after its head was sent).
    pub fn record_error_class(&self, class: &'static str, origin: Origin) {
        self.errors
            .get_or_create(&ErrorLabels {
                class,
                origin: origin.as_str(),
            })
            .inc();
    }

    /// Counts one upstream attempt.
    pub fn record_attempt(&self, backend: &BackendMetrics, outcome: Result<(), &'static str>) {
        backend.tally.record(outcome);
        match outcome {
            Ok(()) => {
                backend.attempt_success.inc();
            }
            Err(outcome) => {
                self.attempts
                    .get_or_create(&AttemptLabels {
                        route: backend.labels.route.to_string(),
                        backend: backend.labels.backend.to_string(),
                        provider: backend.labels.provider,
                        outcome,
                    })
                    .inc();
            }
        }
    }

    /// The in-flight gauge; the caller increments it and holds the returned guard.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight {
            gauge: self.in_flight.clone(),
        }
    }

    /// Counts a configuration load attempt.
    pub fn record_reload(&self, source: &'static str, result: &'static str) {
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .inc();
    }

    /// Publishes the hash now served, replacing the previous series.
    pub fn set_config_hash(&self, hash: &str, unix_seconds: f64) {
        let mut current = self
            .config_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = current.take() {
            self.config_info.remove(&HashLabels { hash: previous });
        }
        self.config_info
            .get_or_create(&HashLabels {
                hash: hash.to_owned(),
            })
            .set(1);
        *current = Some(hash.to_owned());
        self.last_reload_success.set(unix_seconds);
    }
}

/// Token counts as metered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Prompt tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_input: u64,
}

/// Metric handles for one backend of one route.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    labels: RequestLabels,
    requests: [Counter; 5],
    duration: Histogram,
    first_token: Histogram,
    input_tokens: Counter,
    output_tokens: Counter,
    cached_tokens: Counter,
    cost: CostCounter,
    attempt_success: Counter,
    /// Breaker state, retries, hedges and refusals of this backend.
    pub reliability: BackendReliabilityMetrics,
    /// Attempts, failures and the last failure class, for backend health in usage reports.
    pub tally: Arc<AttemptTally>,
}

/// Upstream attempts of one backend since the gateway started.
#[derive(Debug, Default)]
pub struct AttemptTally {
    pub attempts: AtomicU64,
    pub failures: AtomicU64,
    /// Class of the last failed attempt and when it happened.
    pub last_failure: Mutex<Option<(&'static str, chrono::DateTime<chrono::Utc>)>>,
}

impl AttemptTally {
    fn record(&self, outcome: Result<(), &'static str>) {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(class) = outcome {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((class, chrono::Utc::now()));
        }
    }
}

/// Decrements the in-flight gauge when dropped (also when a client disconnects mid-stream).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_optional_key_label() {
        let metrics = Metrics::new(false);
        let backend = metrics.backend(&"ns/chat".into(), &"primary".into(), "openai");
        metrics.record_request(
            Some(&backend),
            Some(&"ns/key".into()),
            200,
            Duration::from_millis(20),
        );
        metrics.record_usage(
            &backend,
            None,
            &TokenCounts {
                input: 10,
                output: 5,
                cached_input: 2,
            },
            Some(0.5),
        );
        metrics.record_request(None, None, 401, Duration::from_millis(1));
        metrics.set_config_hash("sha256:aaa", 1.0);
        metrics.set_config_hash("sha256:bbb", 2.0);
        metrics.record_reload("directory", "success");
        let text = metrics.encode();
        assert!(
            text.contains(r#"sluice_requests_total{route="ns/chat",backend="primary",provider="openai",status_class="2xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"status_class="4xx"} 1"#), "{text}");
        assert!(text.contains(r#"sluice_tokens_total{route="ns/chat",backend="primary",provider="openai",kind="input"} 10"#));
        assert!(text.contains(
            r#"sluice_cost_usd_total{route="ns/chat",backend="primary",provider="openai"} 0.5"#
        ));
        assert!(text.contains(r#"sluice_config_info{hash="sha256:bbb"} 1"#));
        assert!(
            !text.contains("sha256:aaa"),
            "the previous hash series is removed"
        );
        assert!(
            text.contains(r#"sluice_config_reload_total{source="directory",result="success"} 1"#)
        );
        assert!(!text.contains("key="), "no key labels unless enabled");
    }

    #[test]
    fn key_labels_are_opt_in() {
        let metrics = Metrics::new(true);
        let backend = metrics.backend(&"ns/chat".into(), &"primary".into(), "openai");
        metrics.record_request(
            Some(&backend),
            Some(&"team/app".into()),
            200,
            Duration::from_millis(20),
        );
        assert!(
            metrics
                .encode()
                .contains(r#"key="team/app",status_class="2xx"} 1"#)
        );
    }
}
