//! How a snapshot half is laid out in ConfigMaps or Secrets: gzip-compressed JSON split into shards
//! below the 1 MiB object limit, with an index that carries the snapshot hash and a checksum per shard.
//!
//! Objects for gateway `G`: `sluice-G-config` (ConfigMap) and `sluice-G-secrets` (Secret) each hold
//! `index.json` and `shard-00`; larger snapshots continue in `sluice-G-config-1`, `sluice-G-config-2`,
//! ... (and the same for secrets), at most [`MAX_SHARDS`] in all. Every shard key is unique, so all of a
//! half's objects can be projected into one directory.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{GatewayConfig, GatewaySecrets, SCHEMA_VERSION, Snapshot, content_hash};

/// Key of the index in the first object of each half.
pub const INDEX_KEY: &str = "index.json";
/// Largest shard, leaving headroom below the API server's 1 MiB object limit for metadata.
pub const MAX_SHARD_BYTES: usize = 768 * 1024;
/// Most shards per half (12 MiB compressed), a bound the chart's projected volumes also use.
pub const MAX_SHARDS: usize = 16;
/// Label carrying the gateway name on every published object.
pub const GATEWAY_LABEL: &str = "sluice.dev/gateway";
/// Label saying which half an object holds (`config` or `secrets`).
pub const PART_LABEL: &str = "sluice.dev/part";

/// Key of shard `i` inside its object.
pub fn shard_key(i: usize) -> String {
    format!("shard-{i:02}")
}

/// Name of the object that holds shard `i` of the ConfigMap half (`part = "config"`) or the Secret
/// half (`part = "secrets"`) for a gateway. Shard 0 lives with the index.
pub fn object_name(gateway: &str, part: &str, i: usize) -> String {
    if i == 0 {
        format!("sluice-{gateway}-{part}")
    } else {
        format!("sluice-{gateway}-{part}-{i}")
    }
}

/// The index of one published half.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PublishIndex {
    pub schema_version: u32,
    /// Hash of the whole snapshot; both halves carry the same one.
    pub snapshot_hash: String,
    /// Always `gzip+json` in schema version 1.
    pub encoding: String,
    pub shards: Vec<ShardRef>,
}

/// One shard as listed in the index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardRef {
    pub key: String,
    /// Lowercase hex SHA-256 of the shard's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// A half ready to be written: the index and the shard bytes in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub index: PublishIndex,
    pub shards: Vec<Vec<u8>>,
}

impl Published {
    /// The index as the JSON stored under [`INDEX_KEY`].
    pub fn index_json(&self) -> String {
        serde_json::to_string_pretty(&self.index).unwrap_or_default()
    }
}

/// Why a snapshot could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding the snapshot: {0}")]
    Encode(#[from] std::io::Error),
    #[error(
        "the compressed snapshot is {bytes} bytes, above the {max} bytes that {MAX_SHARDS} shards hold"
    )]
    TooLarge { bytes: usize, max: usize },
}

/// Why published objects could not be read back into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{INDEX_KEY} is missing")]
    MissingIndex,
    #[error("{INDEX_KEY} is not valid: {0}")]
    BadIndex(serde_json::Error),
    #[error(
        "schema version {found} is newer than this gateway understands ({SCHEMA_VERSION}); upgrade the gateway"
    )]
    UnsupportedSchema { found: u32 },
    #[error("unknown encoding {0:?}")]
    UnknownEncoding(String),
    #[error("shard {key} is missing (an update may be in progress)")]
    MissingShard { key: String },
    #[error("shard {key} does not match its checksum (an update may be in progress)")]
    ShardChecksum { key: String },
    #[error("decompressing: {0}")]
    Decompress(std::io::Error),
    #[error("decoding the {part}: {source}")]
    Decode {
        part: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "config and secrets belong to different snapshots ({config} vs {secrets}); waiting for both to update"
    )]
    HashMismatch { config: String, secrets: String },
    #[error("the snapshot content does not match its hash {0}")]
    ContentHash(String),
}

const ENCODING: &str = "gzip+json";

/// Publishes both halves of a snapshot.
pub fn publish_snapshot(snapshot: &Snapshot) -> Result<(Published, Published), PublishError> {
    Ok((
        publish_half(&snapshot.config, &snapshot.hash)?,
        publish_half(&snapshot.secrets, &snapshot.hash)?,
    ))
}

/// Compresses and shards one half.
pub fn publish_half<T: Serialize>(
    half: &T,
    snapshot_hash: &str,
) -> Result<Published, PublishError> {
    let json = serde_json::to_vec(half).map_err(std::io::Error::other)?;
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
    encoder.write_all(&json)?;
    let compressed = encoder.finish()?;
    let max = MAX_SHARD_BYTES * MAX_SHARDS;
    if compressed.len() > max {
        return Err(PublishError::TooLarge {
            bytes: compressed.len(),
            max,
        });
    }
    let shards: Vec<Vec<u8>> = if compressed.is_empty() {
        vec![Vec::new()]
    } else {
        compressed
            .chunks(MAX_SHARD_BYTES)
            .map(<[u8]>::to_vec)
            .collect()
    };
    let refs = shards
        .iter()
        .enumerate()
        .map(|(i, bytes)| ShardRef {
            key: shard_key(i),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        })
        .collect();
    let index = PublishIndex {
        schema_version: SCHEMA_VERSION,
        snapshot_hash: snapshot_hash.to_owned(),
        encoding: ENCODING.to_owned(),
        shards: refs,
    };
    Ok(Published { index, shards })
}

/// Reads one half back: `index` is the bytes under [`INDEX_KEY`], `shard` looks a shard key up among
/// the half's objects (or files).
pub fn load_half<T: DeserializeOwned>(
    part: &'static str,
    index: Option<&[u8]>,
    shard: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<(PublishIndex, T), LoadError> {
    let index: PublishIndex = serde_json::from_slice(index.ok_or(LoadError::MissingIndex)?)
        .map_err(LoadError::BadIndex)?;
    if index.schema_version > SCHEMA_VERSION {
        return Err(LoadError::UnsupportedSchema {
            found: index.schema_version,
        });
    }
    if index.encoding != ENCODING {
        return Err(LoadError::UnknownEncoding(index.encoding));
    }
    let mut compressed = Vec::new();
    for shard_ref in &index.shards {
        let bytes = shard(&shard_ref.key).ok_or_else(|| LoadError::MissingShard {
            key: shard_ref.key.clone(),
        })?;
        if hex::encode(Sha256::digest(&bytes)) != shard_ref.sha256 {
            return Err(LoadError::ShardChecksum {
                key: shard_ref.key.clone(),
            });
        }
        compressed.extend_from_slice(&bytes);
    }
    let mut json = Vec::with_capacity(compressed.len() * 4);
    GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut json)
        .map_err(LoadError::Decompress)?;
    let half =
        serde_json::from_slice(&json).map_err(|source| LoadError::Decode { part, source })?;
    Ok((index, half))
}

/// Joins two loaded halves into a snapshot after checking they belong together and are intact.
pub fn join_halves(
    (config_index, config): (PublishIndex, GatewayConfig),
    (secrets_index, secrets): (PublishIndex, GatewaySecrets),
) -> Result<Snapshot, LoadError> {
    if config_index.snapshot_hash != secrets_index.snapshot_hash {
        return Err(LoadError::HashMismatch {
            config: config_index.snapshot_hash,
            secrets: secrets_index.snapshot_hash,
        });
    }
    if content_hash(&config, &secrets) != config_index.snapshot_hash {
        return Err(LoadError::ContentHash(config_index.snapshot_hash));
    }
    if config.schema_version > SCHEMA_VERSION {
        return Err(LoadError::UnsupportedSchema {
            found: config.schema_version,
        });
    }
    Ok(Snapshot {
        config,
        secrets,
        hash: config_index.snapshot_hash,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{KeyConfig, KeyHash, hash_key};

    fn snapshot_with_keys(n: usize) -> Snapshot {
        let keys = (0..n)
            .map(|i| KeyConfig {
                id: format!("team/key-{i}"),
                prefix: format!("sk-sluice-{i:04}"),
                models: vec![],
                denied_models: vec![],
                max_prompt_tokens: None,
                max_tokens: None,
                allowed_regions: vec![],
                rate_limit: None,
                budgets: vec![],
                expires_at: None,
                disabled: false,
            })
            .collect();
        let key_hashes: BTreeMap<_, _> = (0..n)
            .map(|i| {
                (
                    format!("team/key-{i}"),
                    vec![KeyHash {
                        sha256: hash_key(&format!("secret-{i}")),
                        not_after: None,
                    }],
                )
            })
            .collect();
        let config = GatewayConfig {
            schema_version: SCHEMA_VERSION,
            gateway: "default".into(),
            keys,
            ..Default::default()
        };
        Snapshot::new(
            config,
            GatewaySecrets {
                credentials: BTreeMap::new(),
                key_hashes,
            },
        )
    }

    fn round_trip(snapshot: &Snapshot) -> Result<Snapshot, LoadError> {
        let (config, secrets) = publish_snapshot(snapshot).expect("publish");
        let lookup = |p: &Published| {
            let shards = p.shards.clone();
            move |key: &str| {
                (0..shards.len())
                    .find(|i| shard_key(*i) == key)
                    .map(|i| shards[i].clone())
            }
        };
        let config_half = load_half(
            "config",
            Some(config.index_json().as_bytes()),
            lookup(&config),
        )?;
        let secrets_half = load_half(
            "secrets",
            Some(secrets.index_json().as_bytes()),
            lookup(&secrets),
        )?;
        join_halves(config_half, secrets_half)
    }

    #[test]
    fn small_and_sharded_snapshots_round_trip() {
        for n in [0, 10, 60_000] {
            let snapshot = snapshot_with_keys(n);
            let (_, secrets) = publish_snapshot(&snapshot).expect("publish");
            if n == 60_000 {
                assert!(
                    secrets.shards.len() > 1,
                    "60k key hashes must need several shards"
                );
            }
            assert!(secrets.shards.iter().all(|s| s.len() <= MAX_SHARD_BYTES));
            assert_eq!(round_trip(&snapshot).expect("load"), snapshot);
        }
    }

    #[test]
    fn a_corrupt_or_missing_shard_is_refused() {
        let snapshot = snapshot_with_keys(3);
        let (config, _) = publish_snapshot(&snapshot).expect("publish");
        let corrupt =
            load_half::<GatewayConfig>("config", Some(config.index_json().as_bytes()), |_| {
                Some(b"junk".to_vec())
            });
        assert!(matches!(corrupt, Err(LoadError::ShardChecksum { .. })));
        let missing =
            load_half::<GatewayConfig>("config", Some(config.index_json().as_bytes()), |_| None);
        assert!(matches!(missing, Err(LoadError::MissingShard { .. })));
    }

    #[test]
    fn halves_of_different_snapshots_are_not_joined() {
        let a = snapshot_with_keys(1);
        let b = snapshot_with_keys(2);
        let (a_config, _) = publish_snapshot(&a).expect("publish");
        let (_, b_secrets) = publish_snapshot(&b).expect("publish");
        let config = load_half("config", Some(a_config.index_json().as_bytes()), |_| {
            Some(a_config.shards[0].clone())
        })
        .expect("a");
        let secrets = load_half("secrets", Some(b_secrets.index_json().as_bytes()), |_| {
            Some(b_secrets.shards[0].clone())
        })
        .expect("b");
        assert!(matches!(
            join_halves(config, secrets),
            Err(LoadError::HashMismatch { .. })
        ));
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let index =
            br#"{"schemaVersion":99,"snapshotHash":"sha256:x","encoding":"gzip+json","shards":[]}"#;
        let error =
            load_half::<GatewayConfig>("config", Some(index), |_| None).expect_err("newer schema");
        assert!(error.to_string().contains("upgrade the gateway"), "{error}");
    }
}
