//! Errors of usage ingest: reading and writing the ledger.

/// Why a ledger action failed. All are transient for the gateways: their report is refused with 503
/// and resent.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("reading the usage ledger {object}: {source}")]
    ReadLedger {
        object: String,
        source: Box<kube::Error>,
    },
    #[error("writing the usage ledger {object}: {source}")]
    WriteLedger {
        object: String,
        source: Box<kube::Error>,
    },
    #[error("the usage ledger {object} was changed by another writer since it was read")]
    LedgerConflict { object: String },
    #[error("decoding the usage ledger {object}: {message}")]
    DecodeLedger { object: String, message: String },
    #[error("encoding the usage ledger: {0}")]
    EncodeLedger(String),
    #[error(
        "the usage ledger is {bytes} bytes compressed, over the {max}-byte budget of one ConfigMap"
    )]
    LedgerTooLarge { bytes: usize, max: usize },
}

impl UsageError {
    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ReadLedger { .. } => "read",
            Self::WriteLedger { .. } => "write",
            Self::LedgerConflict { .. } => "conflict",
            Self::DecodeLedger { .. } => "decode",
            Self::EncodeLedger(_) => "encode",
            Self::LedgerTooLarge { .. } => "too_large",
        }
    }
}
