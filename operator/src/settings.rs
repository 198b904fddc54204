//! Command-line flags of the operator; every flag can also be set through a `SLUICE_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// How long a Lease stays valid after its last renewal. A replacement takes over at most this long
/// after a leader dies; shorter means faster failover but more Lease writes.
pub const DEFAULT_LEASE_DURATION: &str = "15s";
/// How often the leader renews its Lease: three renewals fit into one lease duration, so two failed
/// renewals in a row still leave the leader in charge.
pub const DEFAULT_LEASE_RENEW_INTERVAL: &str = "5s";
/// How long a burst of changes is collected before one compile: long enough to batch a `kubectl apply`
/// of many files, short enough that a single change reaches the gateways in well under a second.
pub const DEFAULT_DEBOUNCE: &str = "50ms";
/// Full recompile and drift check even without any change, as a safety net for missed watch events.
pub const DEFAULT_RESYNC_INTERVAL: &str = "5m";
/// Concurrent status patches: enough to write 10,000 statuses in seconds without flooding the API server.
pub const DEFAULT_STATUS_CONCURRENCY: usize = 16;

/// How often usage folded from gateway reports is written into statuses: each object is patched at
/// most once per interval however much traffic it sees, and `kubectl get budgets` lags by about this much.
pub const DEFAULT_USAGE_STATUS_INTERVAL: &str = "1s";
/// A gateway silent this long is gone: its budget grants return to the others. Long enough to outlast
/// an operator or network outage that the gateway rides out, resending the same report.
pub const DEFAULT_USAGE_REPORTER_TTL: &str = "1h";

/// A gateway silent this long no longer holds back the others' budget grants: live gateways report every
/// flush interval (1 s by default) even when idle, so 30 s of silence means killed or cut off.
pub const DEFAULT_USAGE_GRANT_TTL: &str = "30s";

/// The operator's flags.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "sluice-operator",
    version,
    about = "Compiles LLMRoute, VirtualKey and Budget resources into Sluice gateway configuration"
)]
pub struct Settings {
    /// Gateway this instance serves: only resources whose `spec.gateway` equals it are compiled.
    #[arg(long, env = "SLUICE_GATEWAY_NAME", default_value = sluice_crds::DEFAULT_GATEWAY)]
    pub gateway_name: String,

    /// Namespace the gateway runs in: the published ConfigMaps and Secrets and the leader Lease live here.
    #[arg(
        long,
        env = "SLUICE_GATEWAY_NAMESPACE",
        default_value = "sluice-system"
    )]
    pub gateway_namespace: String,

    /// Namespaces whose resources are compiled, comma-separated; all namespaces when empty.
    #[arg(long, env = "SLUICE_WATCH_NAMESPACES", value_delimiter = ',', num_args = 0..)]
    pub watch_namespaces: Vec<String>,

    /// Name of the coordination.k8s.io Lease used for leader election [default: sluice-operator-<gateway>].
    #[arg(long, env = "SLUICE_LEASE_NAME")]
    pub lease_name: Option<String>,

    /// How long the Lease stays valid after a renewal.
    #[arg(long, env = "SLUICE_LEASE_DURATION", default_value = DEFAULT_LEASE_DURATION, value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews the Lease (and how often a follower checks it).
    #[arg(long, env = "SLUICE_LEASE_RENEW_INTERVAL", default_value = DEFAULT_LEASE_RENEW_INTERVAL, value_parser = parse_duration)]
    pub lease_renew_interval: Duration,

    /// Identity written into the Lease [default: $POD_NAME, else the host name plus a random suffix].
    #[arg(long, env = "SLUICE_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// How long changes are collected before one compile.
    #[arg(long, env = "SLUICE_DEBOUNCE", default_value = DEFAULT_DEBOUNCE, value_parser = parse_duration)]
    pub debounce: Duration,

    /// Interval of the full recompile and drift check.
    #[arg(long, env = "SLUICE_RESYNC_INTERVAL", default_value = DEFAULT_RESYNC_INTERVAL, value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// Status patches in flight at once.
    #[arg(long, env = "SLUICE_STATUS_CONCURRENCY", default_value_t = DEFAULT_STATUS_CONCURRENCY)]
    pub status_concurrency: usize,

    /// Address of the usage endpoint (`POST /v1/usage/reports`) that gateways push usage and health to.
    #[arg(long, env = "SLUICE_USAGE_ADDR", default_value = "0.0.0.0:8095")]
    pub usage_addr: SocketAddr,

    /// How often folded usage is written into Budget, VirtualKey and LLMRoute status.
    #[arg(long, env = "SLUICE_USAGE_STATUS_INTERVAL", default_value = DEFAULT_USAGE_STATUS_INTERVAL, value_parser = parse_duration)]
    pub usage_status_interval: Duration,

    /// How long a gateway may stay silent before its budget grants are released.
    #[arg(long, env = "SLUICE_USAGE_REPORTER_TTL", default_value = DEFAULT_USAGE_REPORTER_TTL, value_parser = parse_duration)]
    pub usage_reporter_ttl: Duration,

    /// How long a silent gateway's budget grants keep counting against the others'.
    #[arg(long, env = "SLUICE_USAGE_GRANT_TTL", default_value = DEFAULT_USAGE_GRANT_TTL, value_parser = parse_duration)]
    pub usage_grant_ttl: Duration,

    /// Name of the ConfigMap (in the gateway namespace) that holds the usage ledger [default: sluice-usage-ledger-<gateway>].
    #[arg(long, env = "SLUICE_USAGE_LEDGER_NAME")]
    pub usage_ledger_name: Option<String>,

    /// Log format: json (default) or text.
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax, e.g. `info,sluice_operator=debug`.
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    pub log_filter: String,
}

/// Output format of the logs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

impl Settings {
    /// Settings with every default, for gateway `gateway` in `namespace` (tests and embedding); the usage
    /// endpoint takes a free loopback port, so several embedded operators can run in one process.
    pub fn for_gateway(gateway: &str, namespace: &str) -> Self {
        let mut settings = Self::parse_from(["sluice-operator"]);
        gateway.clone_into(&mut settings.gateway_name);
        namespace.clone_into(&mut settings.gateway_namespace);
        settings.usage_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }

    /// The usage ledger's ConfigMap name, derived from the gateway name when not set.
    pub fn usage_ledger_name(&self) -> String {
        self.usage_ledger_name
            .clone()
            .unwrap_or_else(|| format!("sluice-usage-ledger-{}", self.gateway_name))
    }

    /// The Lease name, derived from the gateway name when not set.
    pub fn lease_name(&self) -> String {
        self.lease_name
            .clone()
            .unwrap_or_else(|| format!("sluice-operator-{}", self.gateway_name))
    }

    /// The identity written into the Lease.
    pub fn identity(&self) -> String {
        if let Some(identity) = &self.identity {
            return identity.clone();
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "sluice-operator".to_owned());
        format!("{host}-{}", random_suffix())
    }

    /// Namespaces to watch; `None` means all.
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        let namespaces: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect();
        (!namespaces.is_empty()).then_some(namespaces)
    }

    /// Checks relations between flags that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_renew_interval.is_zero()
            || self.lease_renew_interval * 2 > self.lease_duration
        {
            return Err(format!(
                "--lease-renew-interval ({:?}) must be positive and at most half of --lease-duration ({:?}), so a renewal can fail once without losing the lease",
                self.lease_renew_interval, self.lease_duration
            ));
        }
        if self.usage_status_interval.is_zero() {
            return Err("--usage-status-interval must be positive".to_owned());
        }
        if self.usage_grant_ttl.is_zero() || self.usage_grant_ttl > self.usage_reporter_ttl {
            return Err(format!(
                "--usage-grant-ttl ({:?}) must be positive and at most --usage-reporter-ttl ({:?})",
                self.usage_grant_ttl, self.usage_reporter_ttl
            ));
        }
        if self.status_concurrency == 0 {
            return Err("--status-concurrency must be at least 1".to_owned());
        }
        Ok(())
    }
}

fn parse_duration(input: &str) -> Result<Duration, String> {
    sluice_crds::duration::parse(input).map_err(|error| error.to_string())
}

fn random_suffix() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_derive_the_lease_name() {
        let settings = Settings::for_gateway("prod", "sluice-prod");
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.lease_name(), "sluice-operator-prod");
        assert_eq!(settings.lease_duration, Duration::from_secs(15));
        assert_eq!(settings.lease_renew_interval, Duration::from_secs(5));
        assert_eq!(settings.watched_namespaces(), None);
    }

    #[test]
    fn flags_parse_namespaces_and_durations() {
        let settings = Settings::parse_from([
            "sluice-operator",
            "--gateway-name=staging",
            "--watch-namespaces=team-a, team-b",
            "--lease-duration=4s",
            "--lease-renew-interval=1s",
        ]);
        assert_eq!(settings.gateway_name, "staging");
        assert_eq!(
            settings.watched_namespaces(),
            Some(vec!["team-a".to_owned(), "team-b".to_owned()])
        );
        assert_eq!(settings.lease_duration, Duration::from_secs(4));
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn a_renew_interval_too_close_to_the_lease_duration_is_refused() {
        let settings = Settings::parse_from([
            "sluice-operator",
            "--lease-duration=4s",
            "--lease-renew-interval=3s",
        ]);
        assert!(settings.validate().is_err());
    }
}
