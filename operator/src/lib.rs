//! Sluice operator: controllers that compile custom resources into gateway configuration.
//!
//! [`Operator::bind`] validates the settings and binds the operations endpoint; [`Operator::run`]
//! starts the caches, the leader election, the usage endpoint ([`usage`]) and, while this instance
//! leads, the publisher, the status writer ([`controllers`]) and the usage ledger folder. The binary (`main.rs`) only parses flags, sets up logs and signals.

pub mod controllers;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod settings;
pub mod stores;
pub mod telemetry;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::controllers::Context;
pub use self::error::{Error, Result};
use self::leader::LeaseConfig;
use self::metrics::Metrics;
pub use self::settings::Settings;
use self::stores::MANAGER;
use self::usage::{Clock, Inbox, SystemClock};

/// An operator instance, ready to run.
pub struct Operator {
    settings: Arc<Settings>,
    client: Client,
    listener: TcpListener,
    usage_listener: TcpListener,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("settings", &self.settings)
            .field("listener", &self.listener)
            .field("usage_listener", &self.usage_listener)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Validates `settings` and binds the operations and usage endpoints.
    pub async fn bind(settings: Settings, client: Client) -> Result<Self> {
        settings.validate().map_err(Error::Settings)?;
        let addr = settings.metrics_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::MetricsServer { addr, source })?;
        let addr = settings.usage_addr;
        let usage_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::UsageServer { addr, source })?;
        Ok(Self {
            settings: Arc::new(settings),
            client,
            listener,
            usage_listener,
            metrics: Metrics::new(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the clock that budget windows and usage status read (a test hook: see [`usage::ShiftedClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where gateways push usage reports.
    pub fn usage_addr(&self) -> Result<SocketAddr> {
        let addr = self.settings.usage_addr;
        self.usage_listener
            .local_addr()
            .map_err(|source| Error::UsageServer { addr, source })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn metrics_addr(&self) -> Result<SocketAddr> {
        let addr = self.settings.metrics_addr;
        self.listener
            .local_addr()
            .map_err(|source| Error::MetricsServer { addr, source })
    }

    /// Runs until `shutdown` fires: then stops writing, releases the Lease if held, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            settings,
            client,
            listener,
            usage_listener,
            metrics,
            clock,
        } = self;
        let identity = settings.identity();
        tracing::info!(
            gateway = %settings.gateway_name,
            gateway_namespace = %settings.gateway_namespace,
            watch_namespaces = %settings.watched_namespaces().map_or_else(|| "all".to_owned(), |namespaces| namespaces.join(",")),
            %identity,
            "sluice-operator starting"
        );
        let wake = Arc::new(Notify::new());
        let mut background = JoinSet::new();
        let caches = stores::start(&client, &settings, &wake, &mut background);
        let ops_state = ops::OpsState {
            caches: caches.clone(),
            metrics: Arc::clone(&metrics),
        };
        background.spawn(ops::serve(listener, ops_state, shutdown.clone()));
        let inbox = Inbox::default();
        background.spawn(usage::server::serve(
            usage_listener,
            usage::server::IngestState {
                inbox: inbox.clone(),
                metrics: Arc::clone(&metrics),
                gateway: settings.gateway_name.clone(),
            },
            shutdown.clone(),
        ));

        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_owned(),
                instance: Some(identity.clone()),
            },
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            settings: Arc::clone(&settings),
            caches,
            metrics: Arc::clone(&metrics),
            recorder,
            wake,
            clock,
            inbox,
        });

        let lease = LeaseConfig {
            name: settings.lease_name(),
            namespace: settings.gateway_namespace.clone(),
            identity,
            duration: settings.lease_duration,
            renew_interval: settings.lease_renew_interval,
        };
        // The election stops only after the leader's work has stopped, so nothing is written once the
        // Lease is released.
        let election_stop = CancellationToken::new();
        let (leading_sender, mut leading) = watch::channel(false);
        let election = tokio::spawn(leader::run(
            client,
            lease,
            leading_sender,
            election_stop.clone(),
        ));

        let mut work: Option<(JoinHandle<()>, CancellationToken)> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = leading.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let is_leader = *leading.borrow_and_update();
                    metrics.set_leader(is_leader);
                    match (is_leader, work.is_some()) {
                        (true, false) => {
                            let stop = shutdown.child_token();
                            work = Some((tokio::spawn(controllers::lead(Arc::clone(&ctx), stop.clone())), stop));
                        }
                        (false, true) => {
                            // Stop writing at once: abort drops any write in flight.
                            stop_work(&mut work).await;
                            tracing::warn!("no longer the leader; stopped writing");
                        }
                        _ => {}
                    }
                }
            }
        }
        tracing::info!("shutting down");
        stop_work(&mut work).await;
        metrics.set_leader(false);
        election_stop.cancel();
        if let Err(error) = election.await {
            tracing::warn!(error = %error, "the leader election task failed");
        }
        background.shutdown().await;
        Ok(())
    }
}

async fn stop_work(work: &mut Option<(JoinHandle<()>, CancellationToken)>) {
    if let Some((handle, stop)) = work.take() {
        stop.cancel();
        handle.abort();
        // Aborted is the expected outcome.
        let _ = handle.await;
    }
}
