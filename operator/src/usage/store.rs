//! Persists the usage ledger in one ConfigMap in the operator's namespace: gzip-compressed JSON under
//! `binaryData`, written with the `resourceVersion` it was read at, so a second writer (a previous
//! leader that has not noticed yet) fails with a conflict instead of losing a report.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::error::UsageError;
use super::ledger::{LEDGER_FORMAT, Ledger};
use crate::error::is_status;

/// Key of the compressed ledger in the ConfigMap's `binaryData`.
pub const LEDGER_KEY: &str = "ledger.json.gz";
/// Label that marks the ledger ConfigMap, with the gateway name as value.
pub const LEDGER_LABEL: &str = "sluice.dev/usage-ledger";
/// Most compressed bytes written into the ConfigMap: the API's object limit is 1 MiB, and the object
/// carries metadata too.
pub const MAX_LEDGER_BYTES: usize = 900 * 1024;

/// The ledger's ConfigMap.
#[derive(Clone)]
pub struct LedgerStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    gateway: String,
}

impl std::fmt::Debug for LedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerStore")
            .field("object", &self.object())
            .finish_non_exhaustive()
    }
}

/// A ledger as read, with the `resourceVersion` to write it back at (`None`: no ConfigMap yet).
#[derive(Clone, Debug)]
pub struct Stored {
    pub ledger: Ledger,
    pub version: Option<String>,
}

impl LedgerStore {
    pub fn new(client: Client, namespace: &str, name: &str, gateway: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            gateway: gateway.to_owned(),
        }
    }

    fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads the ledger; an absent ConfigMap is an empty ledger.
    pub async fn load(&self) -> Result<Stored, UsageError> {
        let found =
            self.api
                .get_opt(&self.name)
                .await
                .map_err(|source| UsageError::ReadLedger {
                    object: self.object(),
                    source: Box::new(source),
                })?;
        let Some(config_map) = found else {
            return Ok(Stored {
                ledger: Ledger::default(),
                version: None,
            });
        };
        let version = config_map.metadata.resource_version.clone();
        let ledger = match config_map
            .binary_data
            .as_ref()
            .and_then(|data| data.get(LEDGER_KEY))
        {
            Some(bytes) => decode(&bytes.0).map_err(|message| UsageError::DecodeLedger {
                object: self.object(),
                message,
            })?,
            None => Ledger::default(),
        };
        Ok(Stored { ledger, version })
    }

    /// Writes `ledger` if the ConfigMap is still at `version`; returns the new version and the size.
    pub async fn save(
        &self,
        ledger: &Ledger,
        version: Option<&str>,
    ) -> Result<(String, usize), UsageError> {
        let bytes = encode(ledger)?;
        if bytes.len() > MAX_LEDGER_BYTES {
            return Err(UsageError::LedgerTooLarge {
                bytes: bytes.len(),
                max: MAX_LEDGER_BYTES,
            });
        }
        let size = bytes.len();
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: version.map(str::to_owned),
                labels: Some(BTreeMap::from([
                    (LEDGER_LABEL.to_owned(), self.gateway.clone()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        crate::stores::MANAGER.to_owned(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(LEDGER_KEY.to_owned(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        let params = PostParams {
            field_manager: Some(crate::stores::MANAGER.to_owned()),
            ..PostParams::default()
        };
        let written = match version {
            None => self.api.create(&params, &config_map).await,
            Some(_) => self.api.replace(&self.name, &params, &config_map).await,
        };
        match written {
            Ok(written) => Ok((written.metadata.resource_version.unwrap_or_default(), size)),
            // 409 on replace: someone else wrote; 409 on create: someone else created it first.
            Err(error) if is_status(&error, 409) => Err(UsageError::LedgerConflict {
                object: self.object(),
            }),
            Err(source) => Err(UsageError::WriteLedger {
                object: self.object(),
                source: Box::new(source),
            }),
        }
    }
}

/// JSON, gzip-compressed.
pub fn encode(ledger: &Ledger) -> Result<Vec<u8>, UsageError> {
    let json = serde_json::to_vec(ledger).map_err(|e| UsageError::EncodeLedger(e.to_string()))?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .map_err(|e| UsageError::EncodeLedger(e.to_string()))
}

/// The inverse of [`encode`]; refuses a ledger of a newer format rather than dropping what it cannot read.
pub fn decode(bytes: &[u8]) -> Result<Ledger, String> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| format!("not gzip: {e}"))?;
    let ledger: Ledger = serde_json::from_slice(&json).map_err(|e| format!("not a ledger: {e}"))?;
    if ledger.format > LEDGER_FORMAT {
        return Err(format!(
            "format {} is newer than this operator's {LEDGER_FORMAT}",
            ledger.format
        ));
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::ledger::Totals;

    #[test]
    fn a_ledger_reads_back_as_written_and_a_newer_format_is_refused() {
        let mut ledger = Ledger::default();
        ledger.keys.insert(
            "team/app".into(),
            Totals {
                requests: 3,
                cost_nano_usd: 42,
                ..Totals::default()
            },
        );
        let bytes = encode(&ledger).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), ledger);
        ledger.format = LEDGER_FORMAT + 1;
        assert!(decode(&encode(&ledger).expect("encode")).is_err());
        assert!(decode(b"not gzip").is_err());
    }
}
