//! Pushes the gateway's usage and backend health to the operator and installs the budget grants it
//! answers with.
//!
//! One report in flight: every flush interval (or sooner, when a grant runs low) the reporter builds a
//! report from the [`Ledger`] — usage per (key, route) since the previous report, backend health, the
//! budgets it wants grants for — numbers it with the next sequence, and posts it. An unacknowledged
//! report is resent unchanged (same sequence, same content) with exponential backoff, while new usage
//! keeps accumulating in the ledger for the next one; the operator acknowledges a sequence it has folded
//! before as a duplicate, so nothing is counted twice. On shutdown (after the listeners drained) the
//! pending report is delivered, then a final one marked `last`, within [`SHUTDOWN_DEADLINE`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice_crds::usage::{
    PROTOCOL_VERSION, REPORT_PATH, Reporter as ReporterId, UsageAck, UsageReport,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::HealthTracker;
use super::ledger::Ledger;
use crate::config::ConfigStore;
use crate::metrics::Metrics;

/// Default `--usage-flush-interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one report may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the final reports may take on shutdown.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Where and how often to report.
#[derive(Debug, Clone)]
pub struct ReporterSettings {
    /// The operator's usage endpoint: a base URL (`http://sluice-operator:8095`) or the full report URL.
    pub endpoint: String,
    pub flush_interval: Duration,
    /// Pod name (host name outside Kubernetes).
    pub pod: String,
}

/// Why a report was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("usage endpoint {0:?} is not an http URL")]
    Endpoint(String),
    #[error("sending the report failed: {0}")]
    Send(String),
    #[error("the operator answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the operator's answer is not an acknowledgement: {0}")]
    Answer(String),
    #[error("the operator acknowledged sequence {got}, not {sent}")]
    Sequence { sent: u64, got: u64 },
    #[error("the report took longer than {0:?}")]
    Timeout(Duration),
}

/// The report loop's state.
#[derive(Debug)]
pub struct UsageReporter {
    uri: http::Uri,
    flush_interval: Duration,
    id: ReporterId,
    ledger: Arc<Ledger>,
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    client: Client<HttpConnector, Full<Bytes>>,
    sequence: u64,
    pending: Option<UsageReport>,
    health: HealthTracker,
}

/// The full report URL for an endpoint given as a base URL or as the report URL itself.
pub fn report_uri(endpoint: &str) -> Result<http::Uri, ReportError> {
    let trimmed = endpoint.trim_end_matches('/');
    let full = if trimmed.ends_with(REPORT_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{REPORT_PATH}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|_| ReportError::Endpoint(endpoint.to_owned()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ReportError::Endpoint(endpoint.to_owned()));
    }
    Ok(uri)
}

impl UsageReporter {
    pub fn new(
        settings: &ReporterSettings,
        ledger: Arc<Ledger>,
        store: Arc<ConfigStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ReportError> {
        Ok(Self {
            uri: report_uri(&settings.endpoint)?,
            flush_interval: settings.flush_interval.max(Duration::from_millis(10)),
            id: ReporterId {
                pod: settings.pod.clone(),
                instance: format!("{:016x}", rand::random::<u64>()),
            },
            ledger,
            store,
            metrics,
            client: Client::builder(TokioExecutor::new()).build_http(),
            sequence: 0,
            pending: None,
            health: HealthTracker::default(),
        })
    }

    /// Runs the loop until `stop`, then delivers what is left.
    pub fn spawn(mut self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff: Option<Duration> = None;
            // The first report goes out at once, to fetch grants before traffic spends them.
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                    () = self.ledger.report_soon.notified(), if backoff.is_none() => {}
                }
                match self.flush(false).await {
                    Ok(()) => backoff = None,
                    Err(error) => {
                        let next =
                            backoff.map_or(self.flush_interval, |b| (b * 2).min(MAX_BACKOFF));
                        if backoff.is_none() {
                            tracing::warn!(error = %error, retry_in = ?next, "usage report failed; budgets follow their failure mode until the operator answers");
                        }
                        backoff = Some(next);
                    }
                }
                wait = backoff.unwrap_or(self.flush_interval);
            }
            self.finish().await;
        })
    }

    /// Delivers the pending report and a final `last` one, retrying until [`SHUTDOWN_DEADLINE`].
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        let mut sent_last = false;
        while !sent_last {
            let last = self.pending.is_none();
            match self.flush(last).await {
                Ok(()) => sent_last = last,
                Err(error) => {
                    if tokio::time::Instant::now() + backoff >= deadline {
                        tracing::warn!(error = %error, "final usage report not delivered; its usage is lost");
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        tracing::info!(sequence = self.sequence, "final usage report delivered");
    }

    /// Sends the pending report, building one first if none is pending.
    pub async fn flush(&mut self, last: bool) -> Result<(), ReportError> {
        let report = match self.pending.take() {
            Some(report) => report,
            None => self.build(last),
        };
        let result = self.send(&report).await;
        match result {
            Ok(ack) => {
                self.ledger.acknowledged(&ack.budgets);
                self.metrics
                    .metering
                    .count_report(if ack.duplicate { "duplicate" } else { "ok" });
                Ok(())
            }
            Err(error) => {
                self.ledger.unreachable();
                self.metrics.metering.count_report("error");
                self.pending = Some(report);
                Err(error)
            }
        }
    }

    fn build(&mut self, last: bool) -> UsageReport {
        self.sequence += 1;
        let config = self.store.current();
        let mut budgets: Vec<String> = config
            .as_ref()
            .map(|config| config.budgets.keys().cloned().collect())
            .unwrap_or_default();
        budgets.sort();
        UsageReport {
            protocol: PROTOCOL_VERSION,
            reporter: self.id.clone(),
            sequence: self.sequence,
            gateway: config
                .as_ref()
                .map(|config| config.gateway.clone())
                .unwrap_or_default(),
            config_hash: config
                .as_ref()
                .map(|config| config.hash.to_string())
                .unwrap_or_default(),
            sent_at: Utc::now(),
            last,
            usage: self.ledger.take_report(),
            backends: config
                .as_ref()
                .map(|config| self.health.collect(config, tokio::time::Instant::now()))
                .unwrap_or_default(),
            budgets,
        }
    }

    async fn send(&self, report: &UsageReport) -> Result<UsageAck, ReportError> {
        let body = serde_json::to_vec(report).map_err(|e| ReportError::Send(e.to_string()))?;
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ReportError::Send(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ReportError::Send(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ReportError::Send(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                return Err(ReportError::Status {
                    status: status.as_u16(),
                    body,
                });
            }
            let ack: UsageAck =
                serde_json::from_slice(&bytes).map_err(|e| ReportError::Answer(e.to_string()))?;
            if ack.sequence != report.sequence {
                return Err(ReportError::Sequence {
                    sent: report.sequence,
                    got: ack.sequence,
                });
            }
            Ok(ack)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ReportError::Timeout(REQUEST_TIMEOUT))?
    }

    /// The report waiting for an acknowledgement (tests).
    pub fn pending(&self) -> Option<&UsageReport> {
        self.pending.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone as _;
    use http_body_util::BodyExt as _;
    use sluice_crds::config::BudgetConfig;
    use sluice_crds::usage::BudgetGrant;
    use sluice_crds::v1alpha1::{BudgetAction, BudgetWindow, FailureMode};

    use super::*;
    use crate::metering::budget::Authority;
    use crate::metering::ledger::Charge;
    use crate::metrics::TokenCounts;
    use crate::upstream::Transport;

    /// Plays the operator on loopback: refuses the first `fail_first` reports with 503, then acknowledges
    /// each with a grant for `team/b`; keeps every report it received.
    async fn operator(fail_first: usize) -> (String, Arc<Mutex<Vec<UsageReport>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::<UsageReport>::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let sink = sink.clone();
                            async move {
                                let bytes = request.into_body().collect().await?.to_bytes();
                                let report: UsageReport = serde_json::from_slice(&bytes).unwrap();
                                let count = {
                                    let mut reports = sink.lock().unwrap();
                                    reports.push(report.clone());
                                    reports.len()
                                };
                                let response = if count <= fail_first {
                                    http::Response::builder()
                                        .status(503)
                                        .body(Full::new(Bytes::new()))
                                } else {
                                    let ack = UsageAck {
                                        sequence: report.sequence,
                                        duplicate: false,
                                        budgets: vec![BudgetGrant {
                                            id: "team/b".into(),
                                            window_start: Utc
                                                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                                                .unwrap(),
                                            resets_at: None,
                                            spent_nano_usd: 1_000,
                                            limit_nano_usd: 1_000_000_000,
                                            tokens: 0,
                                            grant_nano_usd: 5_000,
                                        }],
                                    };
                                    http::Response::builder().status(200).body(Full::new(
                                        Bytes::from(serde_json::to_vec(&ack).unwrap()),
                                    ))
                                };
                                Ok::<_, hyper::Error>(response.unwrap())
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, received)
    }

    fn charge(ledger: &Ledger, cost: u64) {
        let budget = BudgetConfig {
            id: "team/b".into(),
            limit_usd: 1.0,
            token_limit: None,
            window: BudgetWindow::Total,
            time_zone: "UTC".into(),
            thresholds: vec![],
            action: BudgetAction::Block,
            stop_streams: false,
            failure_mode: FailureMode::Open,
        };
        let hold = ledger.reserve(&[&budget], cost, Utc::now()).unwrap();
        let (key, route): (Arc<str>, Arc<str>) = ("team/k".into(), "team/r".into());
        ledger.settle(
            &hold,
            &Charge {
                key: &key,
                route: &route,
                failed: false,
                tokens: TokenCounts {
                    input: 3,
                    output: 2,
                    cached_input: 0,
                },
                estimated: 0,
                cost,
                cache_hit: false,
                saved: 0,
            },
            Utc::now(),
        );
    }

    #[test]
    fn endpoints_may_be_base_or_full_urls() {
        for endpoint in [
            "http://op:8095",
            "http://op:8095/",
            "http://op:8095/v1/usage/reports",
        ] {
            assert_eq!(
                report_uri(endpoint).unwrap().to_string(),
                "http://op:8095/v1/usage/reports"
            );
        }
        assert!(report_uri("https://op:8095").is_err());
        assert!(report_uri("op:8095").is_err());
    }

    #[tokio::test]
    async fn an_unacknowledged_report_is_resent_unchanged_and_new_usage_waits_for_the_next() {
        let (url, received) = operator(2).await;
        let metrics = Arc::new(Metrics::new(false));
        let store = Arc::new(ConfigStore::new(
            Arc::new(Transport::new(Default::default())),
            metrics.clone(),
        ));
        // The grant's window is the total window starting at the ledger's start.
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ledger = Arc::new(Ledger::new(Authority::Operator, start));
        let settings = ReporterSettings {
            endpoint: url,
            flush_interval: Duration::from_millis(10),
            pod: "gw-0".into(),
        };
        let mut reporter =
            UsageReporter::new(&settings, ledger.clone(), store, metrics.clone()).unwrap();

        charge(&ledger, 100);
        assert!(reporter.flush(false).await.is_err());
        assert!(!ledger.is_reachable());
        charge(&ledger, 40); // settles while report 1 is unacknowledged
        assert!(reporter.flush(false).await.is_err());
        reporter.flush(false).await.unwrap();
        assert!(reporter.pending().is_none());
        reporter.flush(false).await.unwrap();

        let reports = received.lock().unwrap().clone();
        assert_eq!(reports.len(), 4);
        assert_eq!(reports[0], reports[1], "resent unchanged");
        assert_eq!(reports[0], reports[2], "resent unchanged");
        assert_eq!(reports[0].sequence, 1);
        assert_eq!(reports[0].usage[0].cost_nano_usd, 100);
        assert_eq!(reports[3].sequence, 2);
        assert_eq!(reports[3].usage[0].cost_nano_usd, 40);
        assert_eq!(reports[3].reporter, reports[0].reporter);
        // The acknowledgement installed the grant: 5,000 minus nothing outstanding.
        assert!(ledger.is_reachable());
        let account = ledger.account("team/b").unwrap();
        assert_eq!(account.consumption(), 0);
        assert_eq!(account.grant.unwrap().grant_nano_usd, 5_000);
        let text = metrics.encode();
        assert!(
            text.contains(r#"sluice_usage_reports_total{result="error"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_usage_reports_total{result="ok"} 2"#),
            "{text}"
        );
    }
}
