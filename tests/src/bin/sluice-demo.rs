//! Runs a local control plane with the Sluice CRDs installed until Ctrl-C or SIGTERM (used by `scripts/demo.sh`).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use sluice_tests::harness::{ControlPlane, install_crds};

/// Start kube-apiserver + etcd on loopback (or use `KUBECONFIG` when
/// `SLUICE_TEST_EXISTING_CLUSTER=1`), install the CRDs, write an env file
/// with `KUBECONFIG`, and keep running until interrupted.
#[derive(Debug, Parser)]
struct Args {
    /// Where to write `export KUBECONFIG=...` once the control plane is
    /// ready; it appears only after readiness, so callers can poll for it.
    #[arg(long, env = "SLUICE_DEMO_ENV_FILE")]
    env_file: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    // Started before any tokio runtime exists: start-up blocks and runs its own.
    let control_plane = ControlPlane::from_environment().context("start the control plane")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")?;
    runtime.block_on(serve(&control_plane, args))?;
    // Dropping the control plane stops the apiserver and etcd.
    drop(control_plane);
    Ok(())
}

async fn serve(control_plane: &ControlPlane, args: Args) -> Result<()> {
    let client = control_plane.admin_client().await?;
    install_crds(&client).await.context("install the CRDs")?;

    let kubeconfig = control_plane
        .admin_kubeconfig()
        .context("the control plane has no admin kubeconfig")?;
    let exports = format!(
        "export KUBECONFIG='{}'\nexport SLUICE_DEMO_SERVER='{}'\n",
        kubeconfig.display(),
        control_plane.server()
    );
    match &args.env_file {
        Some(path) => write_atomically(path, &exports)?,
        None => std::io::stdout()
            .write_all(exports.as_bytes())
            .context("write exports to stdout")?,
    }
    tracing::info!(
        server = control_plane.server(),
        kubeconfig = %kubeconfig.display(),
        "control plane ready with Sluice CRDs; Ctrl-C stops it"
    );

    wait_for_shutdown_signal().await?;
    tracing::info!("stopping the control plane");
    Ok(())
}

/// Writes via a temp file and rename, so a poller never reads half a file.
fn write_atomically(path: &std::path::Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents)
        .with_context(|| format!("write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("rename to {}", path.display()))
}

async fn wait_for_shutdown_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
