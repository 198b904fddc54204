//! `sluice-gateway`: parses flags, sets up logging, runs the gateway until SIGTERM/SIGINT, then drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Parser};
use sluice_gateway::app::DEFAULT_MAX_BODY_BYTES;
use sluice_gateway::config::directory::{self, DirectorySource};
use sluice_gateway::config::kube::{self as kube_source, ApiSource};
use sluice_gateway::local::LocalSource;
use sluice_gateway::server::TlsFiles;
use sluice_gateway::telemetry::{self, LogFormat};
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};

/// `--drain-timeout` default, as text for clap (`gateway::DEFAULT_DRAIN_TIMEOUT` in the library; a test keeps them equal).
const DRAIN_TIMEOUT: &str = "25s";

fn duration(text: &str) -> Result<Duration, String> {
    sluice_crds::duration::parse(text).map_err(|error| error.to_string())
}

/// One OpenAI- and Anthropic-compatible API in front of every model provider.
///
/// Exactly one configuration source: `--local DIR` (manifests, no cluster), `--config-dir` with
/// `--secrets-dir` (mounted ConfigMap/Secret volumes), or `--namespace` (watch the API).
#[derive(Debug, Parser)]
#[command(name = "sluice-gateway", version, about)]
#[command(group = ArgGroup::new("source").required(true).args(["local", "config_dir", "namespace"]))]
struct Args {
    /// Address of the API listener.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin listener (/healthz, /readyz, /metrics).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// PEM certificate chain; serves TLS (h2 and http/1.1 via ALPN) when set with --tls-key.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Local mode: serve the manifests (LLMRoute, VirtualKey, Budget, Secret) in this folder.
    #[arg(long, env = "SLUICE_LOCAL")]
    local: Option<PathBuf>,
    /// Local mode: file that keeps generated virtual keys (default: DIR/.sluice-local-keys.json).
    #[arg(long, env = "SLUICE_LOCAL_STATE", requires = "local")]
    local_state: Option<PathBuf>,
    /// Mounted gateway ConfigMap volume (kubelet layout).
    #[arg(long, env = "SLUICE_CONFIG_DIR", requires = "secrets_dir")]
    config_dir: Option<PathBuf>,
    /// Mounted gateway Secret volume (kubelet layout).
    #[arg(long, env = "SLUICE_SECRETS_DIR", requires = "config_dir")]
    secrets_dir: Option<PathBuf>,
    /// Watch the gateway's ConfigMaps and Secrets in this namespace through the API.
    #[arg(long, env = "SLUICE_NAMESPACE")]
    namespace: Option<String>,
    /// Gateway name: selects resources (local mode) or published objects (API and directory modes).
    #[arg(long, env = "SLUICE_GATEWAY", default_value = sluice_crds::DEFAULT_GATEWAY)]
    gateway: String,
    /// Quiet time after a change before the configuration is reloaded.
    #[arg(long, env = "SLUICE_RELOAD_DEBOUNCE", value_parser = duration)]
    reload_debounce: Option<Duration>,
    /// Directory mode: re-check interval when no file event arrives.
    #[arg(long, env = "SLUICE_RESYNC_INTERVAL", value_parser = duration, default_value = "30s")]
    resync_interval: Duration,

    /// Largest request body accepted (413 above).
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// On SIGTERM: how long /readyz fails before the listener stops accepting.
    #[arg(long, env = "SLUICE_DRAIN_DELAY", value_parser = duration, default_value = "0s")]
    drain_delay: Duration,
    /// On SIGTERM: how long in-flight requests and streams may take to finish.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", value_parser = duration, default_value = DRAIN_TIMEOUT)]
    drain_timeout: Duration,
    /// Add the virtual key id as a label to per-request metrics (bounded by the number of keys).
    #[arg(long, env = "SLUICE_METRICS_KEY_LABELS")]
    metrics_key_labels: bool,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

impl Args {
    async fn source(&self) -> anyhow::Result<ConfigSource> {
        if let Some(dir) = &self.local {
            return Ok(ConfigSource::Local(LocalSource::new(
                dir.clone(),
                self.local_state.clone(),
                &self.gateway,
            )));
        }
        if let (Some(config_dir), Some(secrets_dir)) = (&self.config_dir, &self.secrets_dir) {
            let mut source = DirectorySource::new(config_dir.clone(), secrets_dir.clone());
            source.debounce = self.reload_debounce.unwrap_or(directory::DEFAULT_DEBOUNCE);
            source.resync = self.resync_interval;
            return Ok(ConfigSource::Directory(source));
        }
        let namespace = self
            .namespace
            .clone()
            .context("no configuration source given")?;
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API")?;
        let mut source = ApiSource::new(client, namespace, &self.gateway);
        source.debounce = self
            .reload_debounce
            .unwrap_or(kube_source::DEFAULT_DEBOUNCE);
        Ok(ConfigSource::Api(source))
    }
}

async fn terminated() -> anyhow::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").map_err(Into::into),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut options = GatewayOptions::new(args.listen, args.admin_listen);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.server.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    options.app.max_body_bytes = args.max_body_bytes;
    options.metrics_key_labels = args.metrics_key_labels;
    options.drain_delay = args.drain_delay;
    options.drain_timeout = args.drain_timeout;
    let source = args.source().await?;
    let gateway = Gateway::start(options, source).await?;
    let signal = terminated().await?;
    tracing::info!(signal, "received termination signal");
    gateway.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args));
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "gateway failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use sluice_gateway::gateway::DEFAULT_DRAIN_TIMEOUT;

    use super::*;

    #[test]
    fn flag_defaults_match_the_library() {
        assert_eq!(duration(DRAIN_TIMEOUT), Ok(DEFAULT_DRAIN_TIMEOUT));
        Args::try_parse_from(["sluice-gateway", "--local", "dir"]).unwrap();
        assert!(
            Args::try_parse_from(["sluice-gateway"]).is_err(),
            "a source is required"
        );
        assert!(
            Args::try_parse_from(["sluice-gateway", "--local", "d", "--namespace", "n"]).is_err(),
            "one source only"
        );
        assert!(
            Args::try_parse_from(["sluice-gateway", "--config-dir", "c"]).is_err(),
            "--secrets-dir is required too"
        );
    }
}
