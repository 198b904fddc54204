//! `sluice-gateway`: parses flags, sets up logging, runs the gateway until SIGTERM/SIGINT, then drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Parser};
use sluice_gateway::app::DEFAULT_MAX_BODY_BYTES;
use sluice_gateway::config::directory::{self, DirectorySource};
use sluice_gateway::config::kube::{self as kube_source, ApiSource};
use sluice_gateway::local::{EndpointOverride, EndpointOverrides, LocalSource};
use sluice_gateway::server::TlsFiles;
use sluice_gateway::telemetry::otel::{ProcessEnv, TraceExport};
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
    /// Local mode: send every backend of a provider to another base URL, e.g.
    /// `openai=http://127.0.0.1:8000/v1` (repeat the flag, or comma-separate in the variable). The URL is
    /// what a backend's `endpoint` field takes: with `/v1` for openai and openai-compatible.
    #[arg(
        long,
        env = "SLUICE_LOCAL_ENDPOINT_OVERRIDES",
        requires = "local",
        value_delimiter = ',',
        value_name = "PROVIDER=URL"
    )]
    local_endpoint_override: Vec<EndpointOverride>,
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
    /// Keep response caches in this Redis (`redis://[:password@]host:port[/db]`), shared by every replica,
    /// instead of in each process's memory.
    #[arg(long, env = "SLUICE_CACHE_REDIS_URL", hide_env_values = true)]
    cache_redis_url: Option<String>,
    /// Key prefix in the cache Redis: gateways that share a Redis but must not share entries use
    /// different prefixes.
    #[arg(long, env = "SLUICE_CACHE_REDIS_PREFIX", requires = "cache_redis_url")]
    cache_redis_prefix: Option<String>,

    /// The operator's usage endpoint (`http://sluice-operator:8095`): report usage and backend health
    /// there and enforce budgets with its grants. Without it budgets are enforced on local spend only.
    #[arg(long, env = "SLUICE_USAGE_ENDPOINT")]
    usage_endpoint: Option<String>,
    /// How often usage is reported.
    #[arg(long, env = "SLUICE_USAGE_FLUSH_INTERVAL", value_parser = duration, default_value = "1s")]
    usage_flush_interval: Duration,
    /// This gateway's identity in usage reports (default: env POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector base URL (`/v1/traces` is
    /// appended; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` overrides it with a full URL). Off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl Args {
    async fn source(&self) -> anyhow::Result<ConfigSource> {
        if let Some(dir) = &self.local {
            return Ok(ConfigSource::Local(
                LocalSource::new(dir.clone(), self.local_state.clone(), &self.gateway)
                    .with_endpoint_overrides(EndpointOverrides::new(
                        self.local_endpoint_override.iter().cloned(),
                    )),
            ));
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

/// The host name (`/proc/sys/kernel/hostname`, else `HOSTNAME`), for reporter identity outside Kubernetes.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "gateway".to_owned())
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
    if let Some(url) = &args.cache_redis_url {
        let mut redis = sluice_gateway::cache::RedisCacheOptions::new(url.clone());
        if let Some(prefix) = &args.cache_redis_prefix {
            redis.prefix.clone_from(prefix);
        }
        let redis = sluice_gateway::cache::RedisCache::connect(redis)
            .await
            .context("connecting to the cache Redis (--cache-redis-url)")?;
        options.caches = std::sync::Arc::new(sluice_gateway::cache::RouteCaches::shared(redis));
    }
    if let Some(endpoint) = &args.usage_endpoint {
        options.usage = Some(sluice_gateway::metering::reporter::ReporterSettings {
            endpoint: endpoint.clone(),
            flush_interval: args.usage_flush_interval,
            pod: args.pod_name.clone().unwrap_or_else(host_name),
        });
    }
    let source = args.source().await?;
    let gateway = Gateway::start(options, source).await?;
    let signal = terminated().await?;
    tracing::info!(signal, "received termination signal");
    gateway.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let traces = TraceExport::resolve(args.otlp_endpoint.as_deref(), &ProcessEnv)?;
    let tracing =
        telemetry::install(args.log_format, traces.as_ref()).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args));
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "gateway failed");
    }
    tracing.shutdown();
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
