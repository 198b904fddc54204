//! Virtual keys: makes sure every generated key has its Secret (issuing, rotating and expiring keys
//! as [`desired::plan`] decides) before each compile, and gathers the facts their status shows.
//!
//! Decisions are taken on the cache and written with a create (fails if the Secret appeared meanwhile)
//! or an update guarded by the cached `resourceVersion` (fails if it changed); on such a conflict the
//! decision is taken again on a fresh read. A stale cache can never replace a key that exists.

pub mod desired;
pub mod keygen;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource as _, ResourceExt as _};
use sluice_crds::compile::{generated_key_secret_name, secret_data};
use sluice_crds::config::object_id;
use sluice_crds::v1alpha1::VirtualKey;

use self::desired::{KeyAction, KeyFacts, KeyState};
use super::Context;
use crate::error::{Error, Result, is_status, object};
use crate::metrics::Scope;
use crate::stores::MANAGER;

/// What one pass over the keys found and did.
#[derive(Debug, Default)]
pub struct Ensured {
    /// Key Secrets read or written in this pass; newer than the cache, which may not have caught up.
    pub fresh: Vec<Secret>,
    /// Status facts by key id (`namespace/name`).
    pub facts: BTreeMap<String, KeyFacts>,
    /// The earliest time a previous key's grace period ends.
    pub next_due: Option<DateTime<Utc>>,
    /// Keys whose Secret could not be written; retried on the next pass.
    pub failures: usize,
}

/// Issues, rotates and expires generated keys of `keys` as needed.
pub async fn ensure(ctx: &Context, keys: &[Arc<VirtualKey>], now: DateTime<Utc>) -> Ensured {
    let mut ensured = Ensured::default();
    let mut pending = Vec::new();
    for key in keys {
        let namespace = key.namespace().unwrap_or_default();
        let id = object_id(&namespace, &key.name_any());
        if let Some(reference) = &key.spec.secret_ref {
            ensured
                .facts
                .insert(id, bring_your_own_facts(ctx, &namespace, reference));
            continue;
        }
        let secret_name = generated_key_secret_name(&key.name_any());
        let cached = ctx.caches.secrets.get(&namespace, &secret_name);
        match desired::plan(&key.spec, cached.as_deref().map(KeyState::of).as_ref(), now) {
            KeyAction::Keep => {
                if let Some(secret) = cached {
                    record(&mut ensured, id, &secret);
                }
            }
            _ => pending.push((id, Arc::clone(key), cached)),
        }
    }
    let results: Vec<_> = futures::stream::iter(pending)
        .map(|(id, key, cached)| async move { (id, write_key(ctx, &key, cached, now).await) })
        .buffer_unordered(ctx.settings.status_concurrency)
        .collect()
        .await;
    for (id, result) in results {
        match result {
            Ok(Some(secret)) => {
                record(&mut ensured, id, &secret);
                ensured.fresh.push(secret);
            }
            Ok(None) => ensured.failures += 1,
            Err(error) => {
                ctx.metrics.error(Scope::VirtualKey, &error);
                tracing::warn!(key = %id, error = %error, "could not write a virtual key Secret; retrying");
                ensured.failures += 1;
            }
        }
    }
    ensured
}

fn record(ensured: &mut Ensured, id: String, secret: &Secret) {
    let data = secret_data(secret);
    let facts = desired::generated_facts(
        secret.name_any(),
        &data,
        KeyState::of(secret).rotation_generation,
    );
    if let Some(expires) = facts.previous_key_expires_at {
        ensured.next_due = Some(ensured.next_due.map_or(expires, |due| due.min(expires)));
    }
    ensured.facts.insert(id, facts);
}

fn bring_your_own(
    ctx: &Context,
    namespace: &str,
    reference: &sluice_crds::v1alpha1::SecretKeyRef,
) -> Option<String> {
    if reference
        .namespace
        .as_deref()
        .is_some_and(|other| other != namespace)
    {
        return None;
    }
    let secret = ctx.caches.secrets.get(namespace, &reference.name)?;
    desired::display_prefix(&secret_data(&secret), &reference.key)
}

fn bring_your_own_facts(
    ctx: &Context,
    namespace: &str,
    reference: &sluice_crds::v1alpha1::SecretKeyRef,
) -> KeyFacts {
    KeyFacts {
        secret_name: Some(reference.name.clone()),
        key_prefix: bring_your_own(ctx, namespace, reference),
        ..KeyFacts::default()
    }
}

/// Writes the key Secret as decided on `cached`; if the API server refuses because the Secret changed
/// meanwhile (409), decides again once on a fresh read. `Ok(None)` when it changed again.
async fn write_key(
    ctx: &Context,
    key: &VirtualKey,
    cached: Option<Arc<Secret>>,
    now: DateTime<Utc>,
) -> Result<Option<Secret>> {
    let namespace = key.namespace().unwrap_or_default();
    let name = generated_key_secret_name(&key.name_any());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(secret) = write_once(ctx, &api, key, cached.as_deref(), now).await? {
        return Ok(Some(secret));
    }
    let fresh = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::ReadSecret {
            object: object(&namespace, &name),
            source: Box::new(source),
        })?;
    match write_once(ctx, &api, key, fresh.as_ref(), now).await? {
        Some(secret) => Ok(Some(secret)),
        None => {
            tracing::info!(%namespace, %name, "key Secret changed while writing it; deciding again next pass");
            Ok(None)
        }
    }
}

/// One decision and write against `existing`; `Ok(None)` on a conflict. A create when there is no
/// Secret (it fails if one appeared meanwhile), else an update carrying `existing`'s resourceVersion
/// (it fails if the Secret changed meanwhile): an existing key is never overwritten by a stale decision.
async fn write_once(
    ctx: &Context,
    api: &Api<Secret>,
    key: &VirtualKey,
    existing: Option<&Secret>,
    now: DateTime<Utc>,
) -> Result<Option<Secret>> {
    let state = existing.map(KeyState::of);
    let action = desired::plan(&key.spec, state.as_ref(), now);
    if action == KeyAction::Keep {
        return Ok(existing.cloned());
    }
    let new_key = match action {
        KeyAction::Issue { .. } | KeyAction::Rotate { .. } => {
            keygen::generate().map_err(Error::GenerateKey)?
        }
        KeyAction::Keep | KeyAction::DropPrevious => String::new(),
    };
    let current = existing.map(secret_data).unwrap_or_default();
    let data = desired::next_data(&action, &current, &new_key);
    let generation =
        desired::recorded_generation(&action, state.map_or(0, |state| state.rotation_generation));
    let mut secret = desired::key_secret(key, existing, data, generation);
    // Omitted managedFields are left as they are by the API server.
    secret.metadata.managed_fields = None;
    let name = secret.name_any();
    let params = PostParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PostParams::default()
    };
    let written = match existing {
        None => api.create(&params, &secret).await,
        Some(_) => api.replace(&name, &params, &secret).await,
    };
    match written {
        Ok(written) => {
            announce(ctx, key, &action, &written).await;
            Ok(Some(written))
        }
        Err(error) if is_status(&error, 409) => Ok(None),
        Err(source) => Err(Error::WriteKeySecret {
            object: object(&key.namespace().unwrap_or_default(), &name),
            source: Box::new(source),
        }),
    }
}

/// Logs and records an Event for a rotated or expired key, naming only its display prefix.
async fn announce(ctx: &Context, key: &VirtualKey, action: &KeyAction, secret: &Secret) {
    let prefix =
        desired::display_prefix(&secret_data(secret), sluice_crds::compile::KEY_DATA_CURRENT)
            .unwrap_or_default();
    let id = object_id(&key.namespace().unwrap_or_default(), &key.name_any());
    let (reason, note) = match action {
        KeyAction::Issue { .. } => {
            // The first key is visible in status; an Event per new key would flood a bulk import.
            ctx.metrics.key_issued();
            tracing::debug!(key = %id, key_prefix = %prefix, secret = %secret.name_any(), "issued a virtual key");
            return;
        }
        KeyAction::Rotate {
            previous_expires_at,
            ..
        } => (
            "KeyRotated",
            format!(
                "issued key {prefix}… into Secret {}; the previous key works until {}",
                secret.name_any(),
                previous_expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        KeyAction::DropPrevious => (
            "PreviousKeyExpired",
            "the previous key's grace period ended; it no longer works".to_owned(),
        ),
        KeyAction::Keep => return,
    };
    if matches!(action, KeyAction::Rotate { .. }) {
        ctx.metrics.key_issued();
    }
    tracing::info!(key = %id, %reason, key_prefix = %prefix, "virtual key Secret written");
    let event = Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note),
        action: "WriteKeySecret".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &key.object_ref(&())).await {
        tracing::warn!(error = %error, "could not record an Event");
    }
}
