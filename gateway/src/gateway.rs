//! Assembly: builds the shared state, starts the configuration source and the listeners, and drains on
//! shutdown. The binary and the test harness both start gateways through [`Gateway::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_crds::config::Snapshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppSettings};
use crate::config::directory::DirectorySource;
use crate::config::kube::ApiSource;
use crate::config::{ConfigStore, Source};
use crate::handlers::admin::{Admin, Lifecycle};
use crate::local::LocalSource;
use crate::metering::budget::Authority;
use crate::metering::ledger::Ledger;
use crate::metering::reporter::{ReportError, ReporterSettings, UsageReporter};
use crate::metering::{Meter, Metering};
use crate::metrics::Metrics;
use crate::server::{self, RunningServer, ServerError, ServerSettings};
use crate::upstream::{Transport, TransportSettings};

/// Default `--drain-timeout`: long enough for most streams to finish, below Kubernetes' default 30 s
/// termination grace period minus the drain delay.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Where the configuration comes from.
#[derive(Debug)]
pub enum ConfigSource {
    /// A fixed snapshot (tests, embedding); swap it later through [`Gateway::store`].
    Static(Box<Snapshot>),
    /// Mounted ConfigMap/Secret volumes.
    Directory(DirectorySource),
    /// ConfigMaps/Secrets watched through the API.
    Api(ApiSource),
    /// A folder of manifests compiled in-process.
    Local(LocalSource),
}

/// Everything a gateway needs to start.
#[derive(Debug)]
pub struct GatewayOptions {
    pub server: ServerSettings,
    pub app: AppSettings,
    pub transport: TransportSettings,
    pub metrics_key_labels: bool,
    /// Readiness turns false this long before the listeners stop accepting, so load balancers stop
    /// routing new requests here first.
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    /// `None`: the built-in [`Metering`] (rate limits, budgets, usage accounting).
    pub meter: Option<Arc<dyn Meter>>,
    /// Report usage to the operator (and enforce budgets with its grants); `None`: local budgets.
    pub usage: Option<ReporterSettings>,
    /// Response caches: in memory by default; [`crate::cache::RouteCaches::shared`] for one Redis shared by replicas.
    pub caches: Arc<crate::cache::RouteCaches>,
}

impl GatewayOptions {
    /// Options for listening on `listen` (API) and `admin_listen`, everything else default.
    pub fn new(listen: SocketAddr, admin_listen: SocketAddr) -> Self {
        Self {
            server: ServerSettings {
                listen,
                admin_listen,
                tls: None,
            },
            app: AppSettings::default(),
            transport: TransportSettings::default(),
            metrics_key_labels: false,
            drain_delay: Duration::ZERO,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            meter: None,
            usage: None,
            caches: Arc::new(crate::cache::RouteCaches::in_memory()),
        }
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("the initial configuration was rejected: {0}")]
    Config(String),
    #[error(transparent)]
    Usage(#[from] ReportError),
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    server: RunningServer,
    stop_source: CancellationToken,
    source: Option<JoinHandle<()>>,
    /// The usage reporter, stopped after the listeners drained so that it reports every request.
    reporter: Option<(CancellationToken, JoinHandle<()>)>,
    drain_delay: Duration,
    drain_timeout: Duration,
}

impl Gateway {
    /// Builds the state, starts the configuration source and the listeners.
    pub async fn start(options: GatewayOptions, source: ConfigSource) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new(options.metrics_key_labels));
        let transport = Arc::new(Transport::new(options.transport));
        let store = Arc::new(ConfigStore::new(transport, metrics.clone()));
        let caches = options.caches.clone();
        store.on_swap(Box::new(move |config| {
            caches.retain(config.routes.iter().map(|route| &*route.id));
        }));
        let lifecycle = Arc::new(Lifecycle::default());
        let stop_source = CancellationToken::new();
        let source = match source {
            ConfigSource::Static(snapshot) => {
                store
                    .apply(&snapshot, Source::Static)
                    .map_err(StartError::Config)?;
                None
            }
            ConfigSource::Directory(directory) => {
                let (store, stop) = (store.clone(), stop_source.clone());
                Some(tokio::spawn(async move {
                    if let Err(error) = directory.run(store.clone(), stop).await {
                        let message = format!(
                            "watching the configuration directories: {error}; configuration is frozen"
                        );
                        store.record_source_error(Source::Directory, &message);
                    }
                }))
            }
            ConfigSource::Api(api) => {
                Some(tokio::spawn(api.run(store.clone(), stop_source.clone())))
            }
            ConfigSource::Local(local) => {
                let (store, stop) = (store.clone(), stop_source.clone());
                Some(tokio::spawn(async move {
                    if let Err(error) = local.run(store.clone(), stop).await {
                        let message = format!(
                            "watching the manifest folder: {error}; configuration is frozen"
                        );
                        store.record_source_error(Source::Local, &message);
                    }
                }))
            }
        };
        let authority = if options.usage.is_some() {
            Authority::Operator
        } else {
            Authority::Local
        };
        let ledger = Arc::new(Ledger::new(authority, chrono::Utc::now()));
        let meter: Arc<dyn Meter> = match options.meter {
            Some(meter) => meter,
            None => Arc::new(Metering::new(ledger.clone(), metrics.clone())),
        };
        if options.usage.is_some() {
            // Every request is estimated when usage is reported: load the tokenizer before traffic.
            crate::metering::tokens::load_in_background();
        }
        let reporter = match &options.usage {
            Some(settings) => {
                let stop = CancellationToken::new();
                let reporter =
                    UsageReporter::new(settings, ledger, store.clone(), metrics.clone())?;
                Some((stop.clone(), reporter.spawn(stop)))
            }
            None => None,
        };
        let app = Arc::new(App {
            store: store.clone(),
            metrics: metrics.clone(),
            meter,
            settings: options.app,
            caches: options.caches,
        });
        let admin = Admin {
            store: store.clone(),
            metrics: metrics.clone(),
            lifecycle: lifecycle.clone(),
        };
        let server = server::start(&options.server, app, admin).await?;
        Ok(Self {
            store,
            metrics,
            lifecycle,
            server,
            stop_source,
            source,
            reporter,
            drain_delay: options.drain_delay,
            drain_timeout: options.drain_timeout,
        })
    }

    /// Address of the API listener.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr
    }

    /// The configuration store (swap snapshots directly, read the reload status).
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Waits until a configuration is served, up to `timeout`.
    pub async fn wait_until_configured(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.store.current().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Graceful shutdown: not ready → (drain delay) → stop accepting → finish in-flight requests and
    /// streams within the drain timeout → stop the configuration source. Returns whether the drain
    /// completed in time.
    pub async fn shutdown(mut self) -> bool {
        self.lifecycle.start_draining();
        tracing::info!(delay = ?self.drain_delay, timeout = ?self.drain_timeout, "shutting down: not ready, draining");
        tokio::time::sleep(self.drain_delay).await;
        let drained = self.server.drain(self.drain_timeout).await;
        if let Some((stop, reporter)) = self.reporter.take() {
            stop.cancel();
            let _ = reporter.await;
        }
        self.stop_source.cancel();
        if let Some(source) = self.source.take() {
            let _ = source.await;
        }
        tracing::info!(drained, "stopped");
        drained
    }
}
