//! Pure builder of the published objects of one snapshot (ConfigMaps for the config half, Secrets for the
//! secrets half) and the comparison that tells whether a live object still matches.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;
use sluice_crds::config::{
    GATEWAY_LABEL, INDEX_KEY, PART_LABEL, Published, object_name, shard_key,
};

use crate::stores::{MANAGED_BY_LABEL, MANAGER};

/// Annotation carrying the snapshot hash on every published object.
pub const SNAPSHOT_HASH_ANNOTATION: &str = "sluice.dev/snapshot-hash";
/// Part label value of the config half.
pub const CONFIG_PART: &str = "config";
/// Part label value of the secrets half.
pub const SECRETS_PART: &str = "secrets";

/// The objects of one snapshot, each list in write order: further shards first, then the object that
/// holds the index, so a reader never finds an index whose shards are not there yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    pub hash: String,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
}

impl Outputs {
    /// Names of the published ConfigMaps.
    pub fn config_map_names(&self) -> Vec<String> {
        self.config_maps
            .iter()
            .filter_map(|object| object.metadata.name.clone())
            .collect()
    }

    /// Names of the published Secrets.
    pub fn secret_names(&self) -> Vec<String> {
        self.secrets
            .iter()
            .filter_map(|object| object.metadata.name.clone())
            .collect()
    }
}

/// Builds the objects for gateway `gateway` in `namespace` from the two published halves.
pub fn build(gateway: &str, namespace: &str, config: &Published, secrets: &Published) -> Outputs {
    let config_maps = in_write_order(config, |i, entries| ConfigMap {
        metadata: metadata(
            gateway,
            namespace,
            CONFIG_PART,
            i,
            &config.index.snapshot_hash,
        ),
        binary_data: Some(entries.binary),
        data: (!entries.text.is_empty()).then_some(entries.text),
        ..ConfigMap::default()
    });
    let secrets = in_write_order(secrets, |i, entries| {
        let mut data = entries.binary;
        data.extend(
            entries
                .text
                .into_iter()
                .map(|(key, text)| (key, ByteString(text.into_bytes()))),
        );
        Secret {
            metadata: metadata(
                gateway,
                namespace,
                SECRETS_PART,
                i,
                &secrets.index.snapshot_hash,
            ),
            data: Some(data),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        }
    });
    Outputs {
        hash: config.index.snapshot_hash.clone(),
        secrets,
        config_maps,
    }
}

/// The keys of one object: the index (text) in object 0, one shard (binary) in each.
struct Entries {
    text: BTreeMap<String, String>,
    binary: BTreeMap<String, ByteString>,
}

fn in_write_order<T>(published: &Published, make: impl Fn(usize, Entries) -> T) -> Vec<T> {
    let count = published.shards.len();
    // Shards 1.. first, then shard 0 together with the index.
    (1..count)
        .chain(std::iter::once(0))
        .map(|i| {
            let mut text = BTreeMap::new();
            if i == 0 {
                text.insert(INDEX_KEY.to_owned(), published.index_json());
            }
            let binary = published
                .shards
                .get(i)
                .map(|bytes| BTreeMap::from([(shard_key(i), ByteString(bytes.clone()))]))
                .unwrap_or_default();
            make(i, Entries { text, binary })
        })
        .collect()
}

fn metadata(gateway: &str, namespace: &str, part: &str, shard: usize, hash: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(gateway, part, shard)),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            (GATEWAY_LABEL.to_owned(), gateway.to_owned()),
            (PART_LABEL.to_owned(), part.to_owned()),
            (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
            ("app.kubernetes.io/name".to_owned(), "sluice".to_owned()),
            (
                "app.kubernetes.io/component".to_owned(),
                "gateway-config".to_owned(),
            ),
        ])),
        annotations: Some(BTreeMap::from([(
            SNAPSHOT_HASH_ANNOTATION.to_owned(),
            hash.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Whether the live ConfigMap still holds every key, label and annotation the operator set. Keys that
/// others added are left alone: the gateway never reads them.
pub fn config_map_matches(desired: &ConfigMap, live: &ConfigMap) -> bool {
    metadata_matches(&desired.metadata, &live.metadata)
        && contains_all(desired.data.as_ref(), live.data.as_ref())
        && contains_all(desired.binary_data.as_ref(), live.binary_data.as_ref())
}

/// Whether the live Secret still holds every key, label and annotation the operator set.
pub fn secret_matches(desired: &Secret, live: &Secret) -> bool {
    metadata_matches(&desired.metadata, &live.metadata)
        && contains_all(desired.data.as_ref(), live.data.as_ref())
}

fn metadata_matches(desired: &ObjectMeta, live: &ObjectMeta) -> bool {
    live.deletion_timestamp.is_none()
        && contains_all(desired.labels.as_ref(), live.labels.as_ref())
        && contains_all(desired.annotations.as_ref(), live.annotations.as_ref())
}

fn contains_all<V: PartialEq>(
    desired: Option<&BTreeMap<String, V>>,
    live: Option<&BTreeMap<String, V>>,
) -> bool {
    let Some(desired) = desired else { return true };
    desired
        .iter()
        .all(|(key, value)| live.and_then(|live| live.get(key)) == Some(value))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_crds::config::{
        GatewayConfig, GatewaySecrets, MAX_SHARD_BYTES, SCHEMA_VERSION, Snapshot, publish_half,
        publish_snapshot,
    };

    use sha2::Digest as _;

    use super::*;

    fn snapshot() -> Snapshot {
        let config = GatewayConfig {
            schema_version: SCHEMA_VERSION,
            gateway: "prod".into(),
            ..GatewayConfig::default()
        };
        Snapshot::new(config, GatewaySecrets::default())
    }

    #[test]
    fn small_snapshot_is_one_config_map_and_one_secret_with_index_and_labels() {
        let (config, secrets) = publish_snapshot(&snapshot()).expect("publish");
        let outputs = build("prod", "sluice", &config, &secrets);
        assert_eq!(outputs.config_map_names(), vec!["sluice-prod-config"]);
        assert_eq!(outputs.secret_names(), vec!["sluice-prod-secrets"]);
        let config_map = &outputs.config_maps[0];
        let data = config_map.data.as_ref().expect("data");
        assert!(data[INDEX_KEY].contains(&outputs.hash));
        assert!(
            config_map
                .binary_data
                .as_ref()
                .expect("binary")
                .contains_key("shard-00")
        );
        let labels = config_map.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[GATEWAY_LABEL], "prod");
        assert_eq!(labels[PART_LABEL], CONFIG_PART);
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGER);
        assert_eq!(
            config_map
                .metadata
                .annotations
                .as_ref()
                .expect("annotations")[SNAPSHOT_HASH_ANNOTATION],
            outputs.hash
        );
        let secret_data = outputs.secrets[0].data.as_ref().expect("data");
        assert!(secret_data.contains_key(INDEX_KEY) && secret_data.contains_key("shard-00"));
    }

    #[test]
    fn large_halves_are_split_and_written_shards_first() {
        // Incompressible bytes force several shards.
        let noise: Vec<String> = (0..40_000u32)
            .map(|i| hex::encode(sha2::Sha256::digest(i.to_be_bytes())))
            .collect();
        let published = publish_half(&noise, "sha256:test").expect("publish");
        assert!(published.shards.len() > 1);
        let outputs = build("prod", "sluice", &published, &published);
        let names = outputs.config_map_names();
        assert_eq!(
            names.last().map(String::as_str),
            Some("sluice-prod-config"),
            "the index object comes last"
        );
        assert_eq!(names[0], "sluice-prod-config-1");
        for config_map in &outputs.config_maps {
            let bytes: usize = config_map
                .binary_data
                .iter()
                .flatten()
                .map(|(_, v)| v.0.len())
                .sum();
            assert!(bytes <= MAX_SHARD_BYTES);
        }
    }

    #[test]
    fn drift_is_detected_on_changed_or_missing_keys_but_not_on_extra_ones() {
        let (config, secrets) = publish_snapshot(&snapshot()).expect("publish");
        let outputs = build("prod", "sluice", &config, &secrets);
        let desired = &outputs.config_maps[0];
        let mut live = desired.clone();
        assert!(config_map_matches(desired, &live));
        live.data
            .get_or_insert_with(BTreeMap::new)
            .insert("extra".into(), "x".into());
        assert!(
            config_map_matches(desired, &live),
            "keys added by others are ignored"
        );
        live.data
            .get_or_insert_with(BTreeMap::new)
            .insert(INDEX_KEY.into(), "{}".into());
        assert!(
            !config_map_matches(desired, &live),
            "an edited index is drift"
        );
        let mut live = desired.clone();
        live.binary_data = None;
        assert!(
            !config_map_matches(desired, &live),
            "a removed shard is drift"
        );
        let mut live = desired.clone();
        live.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .remove(GATEWAY_LABEL);
        assert!(
            !config_map_matches(desired, &live),
            "a removed label is drift"
        );
        let secret = &outputs.secrets[0];
        let mut live_secret = secret.clone();
        assert!(secret_matches(secret, &live_secret));
        live_secret
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("shard-00".into(), ByteString(b"junk".to_vec()));
        assert!(!secret_matches(secret, &live_secret));
    }
}
