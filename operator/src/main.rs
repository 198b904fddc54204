//! The `sluice-operator` binary: flags, logs, signals; everything else is in the library.

use anyhow::Context as _;
use clap::Parser as _;
use sluice_operator::{Operator, Settings, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(settings.log_format, &settings.log_filter).map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let operator = Operator::bind(settings, client).await?;
    tracing::info!(addr = %operator.metrics_addr()?, "serving /healthz, /readyz and /metrics");
    tracing::info!(addr = %operator.usage_addr()?, "serving usage reports");
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    operator.run(shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("received SIGTERM"),
        result = tokio::signal::ctrl_c() => if result.is_ok() { tracing::info!("received Ctrl-C") },
    }
    shutdown.cancel();
}
