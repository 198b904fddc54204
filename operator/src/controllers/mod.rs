//! The leader's work: one debounced loop that compiles every resource of the gateway and publishes the
//! snapshot, and a status writer beside it.
//!
//! The compiler needs all resources of a gateway at once, so instead of one reconcile per object there
//! is one pass per burst of changes, in the reconcile shape of the house style:
//! reads (caches, fresh reads before key writes) → `desired` (pure: compile, shard, build objects) →
//! server-side apply of what drifted, prune → `status::compute` (pure) → patch only what changed.
//! A pass recompiles only when the fingerprint of its inputs changed (or on resync and at scheduled
//! times such as the end of a key's grace period); otherwise it only checks the published objects
//! for drift, which is what restores hand edits and deletions.

pub mod budget;
pub mod conditions;
pub mod gateway;
pub mod llm_route;
pub mod status;
pub mod status_writer;
pub mod virtual_key;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::Recorder;
use kube::{Client, ResourceExt as _};
use sluice_crds::compile::{Inputs, Kind, SecretStore, compile, generated_key_secret_name};
use sluice_crds::config::publish_snapshot;
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::conditions::Publication;
use self::gateway::desired::Outputs;
use self::status::StatusPlan;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Outcome, Part, Scope};
use crate::settings::Settings;
use crate::stores::{Cache, Caches};
use crate::usage::{Clock, Inbox, UsageView, folder};

/// Consecutive failed publications before statuses say so: a single failed write is retried quietly
/// instead of flipping every resource to not Ready and back.
const FAILURES_BEFORE_STATUS: u32 = 3;
/// Back-off after a failed pass: first retry soon, then less often.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Retry for keys whose Secret could not be written.
const KEY_RETRY: Duration = Duration::from_secs(2);

/// What every part of the leader's work shares.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub wake: Arc<Notify>,
    /// Time for budget windows and usage status (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// Where the usage endpoint hands reports to the leader's ledger folder.
    pub inbox: Inbox,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("gateway", &self.settings.gateway_name)
            .finish_non_exhaustive()
    }
}

/// Runs the leader's work until `cancel` fires (or the task is aborted on losing the lease).
pub async fn lead(ctx: Arc<Context>, cancel: CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => return,
        () = ctx.caches.wait_synced() => {}
    }
    tracing::info!(gateway = %ctx.settings.gateway_name, "leading: caches are synced, publishing");
    let (plans, plan_receiver) = watch::channel(None);
    let (views, view_receiver) = watch::channel(Arc::new(UsageView::default()));
    // Dropping the set (when this future is aborted) aborts the status writer and the usage folder
    // with it; the folder's queue closes, so the usage endpoint answers 503 from then on.
    let mut tasks = JoinSet::new();
    tasks.spawn(status_writer::run(
        Arc::clone(&ctx),
        plan_receiver,
        view_receiver,
        cancel.clone(),
    ));
    tasks.spawn(folder::run(Arc::clone(&ctx), views, cancel.clone()));
    let mut publisher = Publisher::new(&ctx.settings);
    // A new leader publishes at once: the events that happened before it led woke nobody.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = ctx.wake.notified() => {}
                () = tokio::time::sleep_until(publisher.next_wake()) => {}
            }
        }
        // Collect the rest of a burst (a `kubectl apply` of many files) into one compile; after a
        // failure, also honour the back-off however many events arrive.
        let resume = (Instant::now() + ctx.settings.debounce)
            .max(publisher.retry.map_or_else(Instant::now, |(at, _)| at));
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(resume) => {}
        }
        let started = Instant::now();
        let result = publisher.pass(&ctx, &plans).await;
        ctx.metrics.pass_took(Scope::Snapshot, started.elapsed());
        match result {
            Ok(writes) => {
                ctx.metrics.reconciled(
                    Scope::Snapshot,
                    if writes > 0 {
                        Outcome::changed
                    } else {
                        Outcome::unchanged
                    },
                );
                publisher.retry = None;
            }
            Err(error) => {
                ctx.metrics.reconciled(Scope::Snapshot, Outcome::error);
                ctx.metrics.error(Scope::Snapshot, &error);
                let delay = publisher.backoff();
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis(), "publishing failed; retrying");
            }
        }
    }
}

/// What the last compile produced.
struct Compiled {
    fingerprint: u64,
    outputs: Outputs,
    plan: StatusPlan,
    plan_sent: bool,
    /// The next time something time-dependent changes (a grace period ends, a key expires, a window resets).
    due: Option<DateTime<Utc>>,
}

struct Publisher {
    current: Option<Compiled>,
    resync_interval: Duration,
    resync_at: Instant,
    retry: Option<(Instant, Duration)>,
    failures: u32,
}

impl Publisher {
    fn new(settings: &Settings) -> Self {
        Self {
            current: None,
            resync_interval: settings.resync_interval,
            resync_at: Instant::now() + settings.resync_interval,
            retry: None,
            failures: 0,
        }
    }

    fn next_wake(&self) -> Instant {
        let due = self
            .current
            .as_ref()
            .and_then(|current| current.due)
            .map(|due| Instant::now() + (due - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        [Some(self.resync_at), due, self.retry.map(|(at, _)| at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.resync_at)
    }

    fn backoff(&mut self) -> Duration {
        let delay = self
            .retry
            .map_or(RETRY_MIN, |(_, previous)| (previous * 2).min(RETRY_MAX));
        self.retry = Some((Instant::now() + delay, delay));
        delay
    }

    /// One pass: recompile if needed, make the published objects match, hand the plan to the status
    /// writer. Returns how many objects were written.
    async fn pass(
        &mut self,
        ctx: &Context,
        plans: &watch::Sender<Option<Arc<StatusPlan>>>,
    ) -> Result<usize> {
        let now = Utc::now();
        let gateway = ctx.settings.gateway_name.as_str();
        let routes = of_gateway(&ctx.caches.routes, gateway, |route: &LLMRoute| {
            &route.spec.gateway
        });
        let keys = of_gateway(&ctx.caches.keys, gateway, |key: &VirtualKey| {
            &key.spec.gateway
        });
        let budgets = of_gateway(&ctx.caches.budgets, gateway, |budget: &Budget| {
            &budget.spec.gateway
        });
        let fingerprint = fingerprint(&routes, &keys, &budgets, &ctx.caches.secrets);
        let resync = Instant::now() >= self.resync_at;
        let due = self
            .current
            .as_ref()
            .and_then(|current| current.due)
            .is_some_and(|due| due <= now);
        if resync
            || due
            || self
                .current
                .as_ref()
                .is_none_or(|current| current.fingerprint != fingerprint)
        {
            self.current =
                Some(compile_and_shard(ctx, routes, keys, budgets, fingerprint, now).await?);
        }
        if resync {
            self.resync_at = Instant::now() + self.resync_interval;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(0);
        };
        match gateway::reconcile(ctx, &current.outputs).await {
            Ok(writes) => {
                self.failures = 0;
                if writes > 0 {
                    ctx.metrics.published(Outcome::changed);
                    tracing::info!(hash = %current.outputs.hash, objects = writes, "published the gateway configuration");
                }
                if !current.plan_sent || current.plan.publication != Publication::Published {
                    current.plan.publication = Publication::Published;
                    current.plan_sent = true;
                    plans.send_replace(Some(Arc::new(current.plan.clone())));
                }
                Ok(writes)
            }
            Err(error) => {
                ctx.metrics.published(Outcome::error);
                self.failures += 1;
                if self.failures >= FAILURES_BEFORE_STATUS {
                    current.plan.publication = Publication::Failed(error.to_string());
                    plans.send_replace(Some(Arc::new(current.plan.clone())));
                }
                Err(error)
            }
        }
    }
}

fn of_gateway<K>(cache: &Cache<K>, gateway: &str, gateway_of: impl Fn(&K) -> &String) -> Vec<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects: Vec<Arc<K>> = cache
        .all()
        .into_iter()
        .filter(|object| gateway_of(object) == gateway)
        .collect();
    objects.sort_by_key(|object| (object.namespace(), object.name_any()));
    objects
}

/// The Secrets the resources reference, by namespace and name (the compiler rejects references to
/// other namespaces itself; listing them here only costs a lookup).
fn referenced_secrets(
    routes: &[Arc<LLMRoute>],
    keys: &[Arc<VirtualKey>],
) -> BTreeSet<(String, String)> {
    let mut referenced = BTreeSet::new();
    for route in routes {
        let namespace = route.namespace().unwrap_or_default();
        for reference in route
            .spec
            .backends
            .iter()
            .filter_map(|backend| backend.credentials_ref.as_ref())
        {
            referenced.insert((
                reference
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone()),
                reference.name.clone(),
            ));
        }
    }
    for key in keys {
        let namespace = key.namespace().unwrap_or_default();
        match &key.spec.secret_ref {
            Some(reference) => referenced.insert((
                reference.namespace.clone().unwrap_or(namespace),
                reference.name.clone(),
            )),
            None => referenced.insert((namespace, generated_key_secret_name(&key.name_any()))),
        };
    }
    referenced
}

/// A cheap summary of everything the compiler reads: each resource's identity and generation, and
/// each referenced Secret's `resourceVersion`. Status writes do not change it.
fn fingerprint(
    routes: &[Arc<LLMRoute>],
    keys: &[Arc<VirtualKey>],
    budgets: &[Arc<Budget>],
    secrets: &Cache<Secret>,
) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut object = |kind: Kind, meta: &kube::api::ObjectMeta| {
        (
            kind,
            &meta.namespace,
            &meta.name,
            &meta.uid,
            meta.generation,
            meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        )
            .hash(&mut hasher);
    };
    routes
        .iter()
        .for_each(|route| object(Kind::LLMRoute, &route.metadata));
    keys.iter()
        .for_each(|key| object(Kind::VirtualKey, &key.metadata));
    budgets
        .iter()
        .for_each(|budget| object(Kind::Budget, &budget.metadata));
    for (namespace, name) in referenced_secrets(routes, keys) {
        let version = secrets
            .get(&namespace, &name)
            .and_then(|secret| secret.resource_version());
        (namespace, name, version).hash(&mut hasher);
    }
    hasher.finish()
}

/// Issues keys, compiles, shards, and builds the desired objects.
async fn compile_and_shard(
    ctx: &Context,
    routes: Vec<Arc<LLMRoute>>,
    keys: Vec<Arc<VirtualKey>>,
    budgets: Vec<Arc<Budget>>,
    fingerprint: u64,
    now: DateTime<Utc>,
) -> Result<Compiled> {
    let ensured = virtual_key::ensure(ctx, &keys, now).await;
    let mut secrets = SecretStore::new();
    for (namespace, name) in referenced_secrets(&routes, &keys) {
        if let Some(secret) = ctx.caches.secrets.get(&namespace, &name) {
            secrets.insert_secret(&secret);
        }
    }
    // Key Secrets just read or written are newer than the cache.
    ensured
        .fresh
        .iter()
        .for_each(|secret| secrets.insert_secret(secret));

    let mut due = ensured.next_due;
    let mut schedule = |time: Option<DateTime<Utc>>| {
        if let Some(time) = time.filter(|time| *time > now) {
            due = Some(due.map_or(time, |due| due.min(time)));
        }
    };
    keys.iter()
        .for_each(|key| schedule(virtual_key::status::next_expiry(key, now)));
    budgets
        .iter()
        .for_each(|budget| schedule(budget::status::next_reset(budget, now)));
    if ensured.failures > 0 {
        schedule(
            chrono::Duration::from_std(KEY_RETRY)
                .ok()
                .map(|retry| now + retry),
        );
    }

    let gateway = ctx.settings.gateway_name.clone();
    let namespace = ctx.settings.gateway_namespace.clone();
    let routes: Vec<LLMRoute> = routes.iter().map(|route| (**route).clone()).collect();
    let keys: Vec<VirtualKey> = keys.iter().map(|key| (**key).clone()).collect();
    let budgets: Vec<Budget> = budgets.iter().map(|budget| (**budget).clone()).collect();
    // Compiling and compressing 10,000 keys takes a while: keep it off the async workers.
    let (compiled, outputs, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let inputs = Inputs {
            gateway: &gateway,
            routes: &routes,
            keys: &keys,
            budgets: &budgets,
            secrets: &secrets,
            now,
        };
        let compiled = compile(&inputs);
        let took = started.elapsed();
        let (config, secret_half) = publish_snapshot(&compiled.snapshot)?;
        let outputs = gateway::desired::build(&gateway, &namespace, &config, &secret_half);
        Ok::<_, Error>((compiled, outputs, took))
    })
    .await
    .map_err(|error| Error::CompileTask(error.to_string()))??;
    ctx.metrics.compiled(took);
    record_sizes(ctx, &outputs);

    let config = &compiled.snapshot.config;
    let published: BTreeSet<(Kind, String)> = config
        .routes
        .iter()
        .map(|route| (Kind::LLMRoute, route.id.clone()))
        .chain(
            config
                .keys
                .iter()
                .map(|key| (Kind::VirtualKey, key.id.clone())),
        )
        .chain(
            config
                .budgets
                .iter()
                .map(|budget| (Kind::Budget, budget.id.clone())),
        )
        .collect();
    for (kind, scope) in [
        (Kind::LLMRoute, Scope::LLMRoute),
        (Kind::VirtualKey, Scope::VirtualKey),
        (Kind::Budget, Scope::Budget),
    ] {
        let total = compiled
            .outcomes
            .keys()
            .filter(|object| object.kind == kind)
            .count();
        let in_snapshot = published.iter().filter(|(k, _)| *k == kind).count();
        ctx.metrics
            .resource_counts(scope, in_snapshot, total.saturating_sub(in_snapshot));
    }
    let excluded = compiled
        .outcomes
        .values()
        .filter(|outcome| !outcome.published())
        .count();
    tracing::debug!(
        hash = %outputs.hash,
        routes = config.routes.len(),
        keys = config.keys.len(),
        budgets = config.budgets.len(),
        excluded,
        compile_ms = took.as_millis(),
        "compiled the gateway configuration"
    );
    let plan = StatusPlan {
        gateway: ctx.settings.gateway_name.clone(),
        outcomes: compiled.outcomes,
        published,
        publication: Publication::Published,
        key_facts: ensured.facts,
    };
    Ok(Compiled {
        fingerprint,
        outputs,
        plan,
        plan_sent: false,
        due,
    })
}

fn record_sizes(ctx: &Context, outputs: &Outputs) {
    let config: usize = outputs
        .config_maps
        .iter()
        .flat_map(|object| object.binary_data.iter().flatten())
        .map(|(_, v)| v.0.len())
        .sum();
    let secrets: usize = outputs
        .secrets
        .iter()
        .flat_map(|object| object.data.iter().flatten())
        .filter(|(key, _)| key.as_str() != sluice_crds::config::INDEX_KEY)
        .map(|(_, v)| v.0.len())
        .sum();
    ctx.metrics.snapshot_size(Part::config, config);
    ctx.metrics.snapshot_size(Part::secrets, secrets);
}
