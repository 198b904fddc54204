//! Writes the status of every resource after each publication and each new usage view (at most one
//! per usage status interval): computes it with the kind's pure `status::compute`, patches only what
//! changed (several patches in flight), and records an Event for each condition transition and each
//! announcement (a budget threshold).
//!
//! It runs beside the publisher, so a large status backlog never delays the next publication; a newer
//! plan simply starts the next pass.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_crds::conditions::THRESHOLD_REACHED;
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::conditions::transitions;
use super::status::{StatusChange, StatusPlan};
use super::{Context, budget, llm_route, virtual_key};
use crate::error::{Error, is_status, object as object_name};
use crate::metrics::{Outcome, Scope};
use crate::stores::Cache;
use crate::usage::UsageView;

/// A kind whose status the operator writes.
pub trait StatusKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const SCOPE: Scope;
    /// The status change this object needs under `plan` and `usage`, if any.
    fn compute(
        &self,
        plan: &StatusPlan,
        usage: &UsageView,
        now: DateTime<Utc>,
    ) -> Option<StatusChange>;
}

impl StatusKind for LLMRoute {
    const SCOPE: Scope = Scope::LLMRoute;
    fn compute(
        &self,
        plan: &StatusPlan,
        usage: &UsageView,
        now: DateTime<Utc>,
    ) -> Option<StatusChange> {
        llm_route::status::compute(self, plan, usage, now)
    }
}

impl StatusKind for VirtualKey {
    const SCOPE: Scope = Scope::VirtualKey;
    fn compute(
        &self,
        plan: &StatusPlan,
        usage: &UsageView,
        now: DateTime<Utc>,
    ) -> Option<StatusChange> {
        virtual_key::status::compute(self, plan, usage, now)
    }
}

impl StatusKind for Budget {
    const SCOPE: Scope = Scope::Budget;
    fn compute(
        &self,
        plan: &StatusPlan,
        usage: &UsageView,
        now: DateTime<Utc>,
    ) -> Option<StatusChange> {
        budget::status::compute(self, plan, usage, now)
    }
}

/// Objects as this writer last patched them, by `namespace/name`, with the `resourceVersion` they had
/// before: while the cache still shows that version it has not seen our patch yet, and the patched
/// object is the truth (so a transition is neither patched nor announced twice).
struct Written<K>(HashMap<String, (String, K)>);

impl<K: Resource + Clone> Written<K> {
    fn current(&mut self, cached: &Arc<K>) -> K {
        let key = format!(
            "{}/{}",
            cached.namespace().unwrap_or_default(),
            cached.name_any()
        );
        match self.0.get(&key) {
            Some((version_before, patched))
                if cached.resource_version().as_deref() == Some(version_before.as_str()) =>
            {
                patched.clone()
            }
            Some(_) => {
                self.0.remove(&key);
                (**cached).clone()
            }
            None => (**cached).clone(),
        }
    }
}

/// Writes statuses for each new plan or usage view until `cancel` fires.
pub async fn run(
    ctx: Arc<Context>,
    mut plans: watch::Receiver<Option<Arc<StatusPlan>>>,
    mut usage: watch::Receiver<Arc<UsageView>>,
    cancel: CancellationToken,
) {
    let mut routes = Written::<LLMRoute>(HashMap::new());
    let mut keys = Written::<VirtualKey>(HashMap::new());
    let mut budgets = Written::<Budget>(HashMap::new());
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = plans.changed() => if changed.is_err() { return },
            changed = usage.changed() => if changed.is_err() { return },
        }
        let Some(plan) = plans.borrow_and_update().clone() else {
            continue;
        };
        let view = usage.borrow_and_update().clone();
        write_all(&ctx, &ctx.caches.budgets, &plan, &view, &mut budgets).await;
        write_all(&ctx, &ctx.caches.routes, &plan, &view, &mut routes).await;
        write_all(&ctx, &ctx.caches.keys, &plan, &view, &mut keys).await;
    }
}

async fn write_all<K: StatusKind>(
    ctx: &Context,
    cache: &Cache<K>,
    plan: &StatusPlan,
    usage: &UsageView,
    written: &mut Written<K>,
) {
    let started = tokio::time::Instant::now();
    let now = ctx.clock.now();
    let mut unchanged = 0usize;
    let mut changes = Vec::new();
    for cached in cache.all() {
        let current = written.current(&cached);
        match current.compute(plan, usage, now) {
            Some(change) => changes.push((
                cached.resource_version().unwrap_or_default(),
                current,
                change,
            )),
            None => unchanged += 1,
        }
    }
    let results: Vec<_> = futures::stream::iter(changes)
        .map(|(version_before, object, change)| async move {
            (version_before, patch(ctx, &object, change).await)
        })
        .buffer_unordered(ctx.settings.status_concurrency)
        .collect()
        .await;
    for _ in 0..unchanged {
        ctx.metrics.reconciled(K::SCOPE, Outcome::unchanged);
    }
    for (version_before, result) in results {
        match result {
            Ok(Some(patched)) => {
                ctx.metrics.reconciled(K::SCOPE, Outcome::changed);
                ctx.metrics.status_patched(K::SCOPE);
                let key = format!(
                    "{}/{}",
                    patched.namespace().unwrap_or_default(),
                    patched.name_any()
                );
                written.0.insert(key, (version_before, patched));
            }
            Ok(None) => {}
            Err(error) => {
                ctx.metrics.reconciled(K::SCOPE, Outcome::error);
                ctx.metrics.error(K::SCOPE, &error);
                tracing::warn!(error = %error, "status patch failed; retried with the next plan or resync");
            }
        }
    }
    ctx.metrics.pass_took(K::SCOPE, started.elapsed());
}

/// Patches the status and records Events for its transitions; `Ok(None)` when the object is gone.
async fn patch<K: StatusKind>(
    ctx: &Context,
    object: &K,
    change: StatusChange,
) -> Result<Option<K>, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let patched = match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&change.patch))
        .await
    {
        Ok(patched) => patched,
        Err(error) if is_status(&error, 404) => return Ok(None),
        Err(source) => {
            return Err(Error::PatchStatus {
                kind: kind_name::<K>(),
                object: object_name(&namespace, &name),
                source: Box::new(source),
            });
        }
    };
    // Thresholds are announced below, once each per window, not as condition transitions.
    for transition in transitions(&change.before, &change.after)
        .into_iter()
        .filter(|transition| transition.type_ != THRESHOLD_REACHED)
    {
        let status = if transition.status { "True" } else { "False" };
        tracing::info!(
            kind = kind_name::<K>(),
            %namespace,
            %name,
            condition = %transition.type_,
            %status,
            reason = %transition.reason,
            message = %transition.message,
            "condition changed"
        );
        let event = Event {
            type_: if transition.status {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: transition.reason.clone(),
            note: Some(event_note(&format!(
                "{} is {status}: {}",
                transition.type_, transition.message
            ))),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %error, "could not record an Event");
        }
    }
    for announcement in &change.announcements {
        tracing::info!(
            kind = kind_name::<K>(),
            %namespace,
            %name,
            reason = announcement.reason,
            note = %announcement.note,
            "announced"
        );
        let event = Event {
            type_: if announcement.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: announcement.reason.to_owned(),
            note: Some(event_note(&announcement.note)),
            action: announcement.action.clone(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %error, "could not record an Event");
        }
    }
    Ok(Some(patched))
}

/// Event notes are limited to 1 KiB.
fn event_note(text: &str) -> String {
    const MAX: usize = 1000;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "LLMRoute" => "LLMRoute",
        "VirtualKey" => "VirtualKey",
        "Budget" => "Budget",
        _ => "object",
    }
}
