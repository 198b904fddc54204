//! The operator's error type: one variant per action that can fail, each with a stable metric label.

use sluice_crds::config::PublishError;

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operator action failed. API and network failures are transient (retried with back-off);
/// invalid resources are never errors here: the compiler turns them into `False` conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {object}: {source}")]
    Apply {
        kind: &'static str,
        object: String,
        source: Box<kube::Error>,
    },
    #[error("deleting stale {kind} {object}: {source}")]
    Prune {
        kind: &'static str,
        object: String,
        source: Box<kube::Error>,
    },
    #[error("patching the status of {kind} {object}: {source}")]
    PatchStatus {
        kind: &'static str,
        object: String,
        source: Box<kube::Error>,
    },
    #[error("reading Secret {object}: {source}")]
    ReadSecret {
        object: String,
        source: Box<kube::Error>,
    },
    #[error("writing the key Secret {object}: {source}")]
    WriteKeySecret {
        object: String,
        source: Box<kube::Error>,
    },
    #[error("generating a virtual key: {0}")]
    GenerateKey(String),
    #[error("encoding the snapshot: {0}")]
    EncodeSnapshot(#[from] PublishError),
    #[error("updating the leader Lease {object}: {source}")]
    Lease {
        object: String,
        source: Box<kube::Error>,
    },
    #[error("serving the metrics endpoint on {addr}: {source}")]
    MetricsServer {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving the usage endpoint on {addr}: {source}")]
    UsageServer {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the compile task failed: {0}")]
    CompileTask(String),
    #[error("invalid settings: {0}")]
    Settings(String),
}

impl Error {
    /// A low-cardinality label for the `error` dimension of metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "apply",
            Self::Prune { .. } => "prune",
            Self::PatchStatus { .. } => "patch_status",
            Self::ReadSecret { .. } => "read_secret",
            Self::WriteKeySecret { .. } => "write_key_secret",
            Self::GenerateKey(_) => "generate_key",
            Self::EncodeSnapshot(_) => "encode_snapshot",
            Self::Lease { .. } => "lease",
            Self::MetricsServer { .. } => "metrics_server",
            Self::UsageServer { .. } => "usage_server",
            Self::CompileTask(_) => "compile_task",
            Self::Settings(_) => "settings",
        }
    }

    /// Whether the API server refused the write because another writer changed the object first.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Apply { source, .. }
            | Self::PatchStatus { source, .. }
            | Self::WriteKeySecret { source, .. }
            | Self::Lease { source, .. } => is_status(source, 409),
            _ => false,
        }
    }
}

/// `namespace/name`, how errors name objects.
pub fn object(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Whether `error` is an API error response with HTTP status `code`.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}
