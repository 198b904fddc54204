//! Prometheus metrics of the operator: compiles, publications, status reconciles and patches, errors,
//! snapshot size, leadership, usage reports and ledger writes.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What a reconcile worked on: the whole snapshot of a gateway, or one resource kind's statuses.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Scope {
    Snapshot,
    LLMRoute,
    VirtualKey,
    Budget,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(
    non_camel_case_types,
    reason = "label values are lowercase on the wire"
)]
pub enum Outcome {
    /// Something was written.
    changed,
    /// Everything was already as desired.
    unchanged,
    /// An API call failed; retried with back-off.
    error,
}

/// What became of a usage report.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(
    non_camel_case_types,
    reason = "label values are lowercase on the wire"
)]
pub enum ReportResult {
    /// Folded into the ledger and acknowledged.
    folded,
    /// Folded before; acknowledged again, not counted.
    duplicate,
    /// Invalid (400 or 413).
    rejected,
    /// Not the leader, or the ledger could not be written (503; the gateway resends).
    unavailable,
}

/// How a ledger write ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(
    non_camel_case_types,
    reason = "label values are lowercase on the wire"
)]
pub enum LedgerWrite {
    ok,
    /// Another writer changed the ledger first.
    conflict,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    result: ReportResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LedgerLabels {
    result: LedgerWrite,
}

/// Which half of a snapshot.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(
    non_camel_case_types,
    reason = "label values are lowercase on the wire"
)]
pub enum Part {
    config,
    secrets,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    kind: Scope,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: Scope,
    result: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: Scope,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: Part,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    kind: Scope,
    state: &'static str,
}

/// All operator metrics, registered in one registry that `/metrics` encodes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: Family<ScopeLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    compile_seconds: Histogram,
    publishes: Family<ReconcileLabels, Counter>,
    snapshot_bytes: Family<PartLabels, Gauge>,
    resources: Family<ResourceLabels, Gauge>,
    is_leader: Gauge,
    keys_issued: Counter,
    usage_reports: Family<ReportLabels, Counter>,
    ledger_writes: Family<LedgerLabels, Counter>,
    ledger_bytes: Gauge,
    status_patches: Family<ScopeLabels, Counter>,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to ~65 s: a small compile to a full status pass over 10,000 resources.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("sluice_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by kind and result",
            reconciles.clone(),
        );
        let reconcile_seconds = Family::<ScopeLabels, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes by kind",
            reconcile_seconds.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed API actions by kind and action",
            errors.clone(),
        );
        let compile_seconds = seconds_histogram();
        registry.register(
            "compile_duration_seconds",
            "Duration of one compile of all resources of the gateway",
            compile_seconds.clone(),
        );
        let publishes = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "publishes",
            "Snapshot publications by result",
            publishes.clone(),
        );
        let snapshot_bytes = Family::<PartLabels, Gauge>::default();
        registry.register(
            "snapshot_bytes",
            "Compressed size of the published snapshot by half",
            snapshot_bytes.clone(),
        );
        let resources = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "resources",
            "Resources of the gateway by kind and whether they are in the snapshot",
            resources.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "is_leader",
            "1 while this instance holds the leader Lease",
            is_leader.clone(),
        );
        let keys_issued = Counter::default();
        registry.register(
            "virtual_keys_issued",
            "Virtual keys generated (new keys and rotations)",
            keys_issued.clone(),
        );
        let usage_reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "usage_reports",
            "Usage reports from gateways by result (folded, duplicate, rejected, unavailable)",
            usage_reports.clone(),
        );
        let ledger_writes = Family::<LedgerLabels, Counter>::default();
        registry.register(
            "usage_ledger_writes",
            "Writes of the usage ledger ConfigMap by result",
            ledger_writes.clone(),
        );
        let ledger_bytes = Gauge::default();
        registry.register(
            "usage_ledger_bytes",
            "Compressed size of the usage ledger last written",
            ledger_bytes.clone(),
        );
        let status_patches = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "status_patches",
            "Status patches sent to the API server by kind",
            status_patches.clone(),
        );
        Arc::new(Self {
            registry,
            reconciles,
            reconcile_seconds,
            errors,
            compile_seconds,
            publishes,
            snapshot_bytes,
            resources,
            is_leader,
            keys_issued,
            usage_reports,
            ledger_writes,
            ledger_bytes,
            status_patches,
        })
    }

    /// Counts one reconcile of `kind` (one object, or the whole snapshot) with its result.
    pub fn reconciled(&self, kind: Scope, result: Outcome) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
    }

    /// Records how long one pass over `kind` took.
    pub fn pass_took(&self, kind: Scope, took: Duration) {
        self.reconcile_seconds
            .get_or_create(&ScopeLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// Records a failed API action.
    pub fn error(&self, kind: Scope, error: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind,
                error: error.metric_label(),
            })
            .inc();
    }

    /// Records a compile.
    pub fn compiled(&self, took: Duration) {
        self.compile_seconds.observe(took.as_secs_f64());
    }

    /// Records a publication attempt.
    pub fn published(&self, result: Outcome) {
        self.publishes
            .get_or_create(&ReconcileLabels {
                kind: Scope::Snapshot,
                result,
            })
            .inc();
    }

    /// Sets the compressed size of one published half.
    pub fn snapshot_size(&self, part: Part, bytes: usize) {
        self.snapshot_bytes
            .get_or_create(&PartLabels { part })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Sets how many resources of `kind` are in the snapshot and how many are left out.
    pub fn resource_counts(&self, kind: Scope, published: usize, excluded: usize) {
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.resources
            .get_or_create(&ResourceLabels {
                kind,
                state: "published",
            })
            .set(to_i64(published));
        self.resources
            .get_or_create(&ResourceLabels {
                kind,
                state: "excluded",
            })
            .set(to_i64(excluded));
    }

    /// Sets the leadership gauge.
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.set(i64::from(leader));
    }

    /// Counts a generated key.
    pub fn key_issued(&self) {
        self.keys_issued.inc();
    }

    /// Counts a usage report by what became of it.
    pub fn report(&self, result: ReportResult) {
        self.usage_reports
            .get_or_create(&ReportLabels { result })
            .inc();
    }

    /// Counts a ledger write; `bytes` is its compressed size when it succeeded.
    pub fn ledger_written(&self, result: LedgerWrite, bytes: usize) {
        self.ledger_writes
            .get_or_create(&LedgerLabels { result })
            .inc();
        if result == LedgerWrite::ok {
            self.ledger_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Counts a status patch of `kind`.
    pub fn status_patched(&self, kind: Scope) {
        self.status_patches
            .get_or_create(&ScopeLabels { kind })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prefixed_metrics_with_low_cardinality_labels() {
        let metrics = Metrics::new();
        metrics.reconciled(Scope::LLMRoute, Outcome::changed);
        metrics.pass_took(Scope::LLMRoute, Duration::from_millis(3));
        metrics.set_leader(true);
        metrics.snapshot_size(Part::config, 1234);
        let text = metrics.encode();
        assert!(
            text.contains(
                "sluice_operator_reconciles_total{kind=\"LLMRoute\",result=\"changed\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("sluice_operator_is_leader 1"), "{text}");
        assert!(
            text.contains("sluice_operator_snapshot_bytes{part=\"config\"} 1234"),
            "{text}"
        );
    }
}
