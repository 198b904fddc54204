//! Publication of a compiled snapshot into the gateway namespace: server-side apply of every object that
//! is missing or differs from the desired one (this also restores hand edits and deletions), then
//! pruning of shard objects the snapshot no longer needs.

pub mod desired;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_crds::config::PART_LABEL;

use self::desired::Outputs;
use super::Context;
use crate::error::{Error, Result, is_status, object};
use crate::stores::{Cache, MANAGER};

/// Makes the live objects match `outputs`; returns how many objects were written or deleted.
pub async fn reconcile(ctx: &Context, outputs: &Outputs) -> Result<usize> {
    let namespace = ctx.settings.gateway_namespace.as_str();
    let mut writes = 0;
    // The secrets half first: a gateway that loads the new config must find the credentials it names.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for secret in &outputs.secrets {
        writes += apply_if_drifted(
            &secrets,
            &ctx.caches.output_secrets,
            secret,
            desired::secret_matches,
        )
        .await?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    for config_map in &outputs.config_maps {
        writes += apply_if_drifted(
            &config_maps,
            &ctx.caches.output_config_maps,
            config_map,
            desired::config_map_matches,
        )
        .await?;
    }
    // Only after the new index is written do older shards become unreferenced.
    writes += prune(
        &secrets,
        &ctx.caches.output_secrets,
        &outputs.secret_names(),
    )
    .await?;
    writes += prune(
        &config_maps,
        &ctx.caches.output_config_maps,
        &outputs.config_map_names(),
    )
    .await?;
    Ok(writes)
}

async fn apply_if_drifted<K>(
    api: &Api<K>,
    live: &Cache<K>,
    desired: &K,
    matches: fn(&K, &K) -> bool,
) -> Result<usize>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    if live
        .get(&namespace, &name)
        .is_some_and(|live| matches(desired, &live))
    {
        return Ok(0);
    }
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: kind_of::<K>(),
        object: object(&namespace, &name),
        source: Box::new(source),
    })?;
    tracing::debug!(kind = kind_of::<K>(), %namespace, %name, "applied published object");
    Ok(1)
}

async fn prune<K>(api: &Api<K>, live: &Cache<K>, keep: &[String]) -> Result<usize>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let keep: BTreeSet<&str> = keep.iter().map(String::as_str).collect();
    let mut deleted = 0;
    for object in live.all() {
        let name = object.name_any();
        let published_part = object
            .labels()
            .get(PART_LABEL)
            .is_some_and(|part| part == desired::CONFIG_PART || part == desired::SECRETS_PART);
        if !published_part
            || keep.contains(name.as_str())
            || object.meta().deletion_timestamp.is_some()
        {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(kind = kind_of::<K>(), %name, "deleted a shard object the snapshot no longer needs");
                deleted += 1;
            }
            Err(error) if is_status(&error, 404) => {}
            Err(source) => {
                let object = crate::error::object(&object.namespace().unwrap_or_default(), &name);
                return Err(Error::Prune {
                    kind: kind_of::<K>(),
                    object,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(deleted)
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        _ => "object",
    }
}
