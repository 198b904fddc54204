//! Configuration straight from the Kubernetes API: watch the gateway's ConfigMaps and Secrets by name
//! and assemble a snapshot whenever they change — sub-second, unlike kubelet's volume refresh.
//!
//! RBAC: `get`, `list` and `watch` on exactly the objects named by `object_name(gateway, part, i)` for
//! `i < MAX_SHARDS`, granted with `resourceNames`. The API server authorizes a list or watch against
//! `resourceNames` only when it carries a `metadata.name` field selector, so there is one watch per
//! possible object name instead of one label-selected watch per kind (which would need read access to
//! every Secret in the namespace).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use sluice_crds::config::{
    GatewayConfig, GatewaySecrets, INDEX_KEY, LoadError, MAX_SHARDS, join_halves, load_half,
    object_name,
};
use tokio_util::sync::CancellationToken;

use super::store::{ConfigStore, Source, is_transient};

/// Quiet time after a change before assembling: the operator writes shards, then the index, then the
/// other half, within milliseconds.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
/// Re-assembly while an update stays half-written (a missing half may be created any moment).
const INCOMPLETE_RETRY: Duration = Duration::from_secs(2);

/// The files of one object: key → bytes.
type Files = BTreeMap<String, Vec<u8>>;
/// The files of every watched object of one kind, by object name.
type Objects = BTreeMap<String, Files>;
/// A watch event reduced to the object's name and files, tagged with the name its watch selects.
type FilesEvent = (String, Event<(String, Files)>);

fn configmap_files(cm: &ConfigMap) -> Files {
    let text = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()));
    text.chain(binary).collect()
}

fn secret_files(secret: &Secret) -> Files {
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()));
    let string_data = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
    data.chain(string_data).collect()
}

/// Keeps the latest listed state of one half's objects. Each object has its own watch, and a re-list of
/// one watch replaces only that object.
#[derive(Debug)]
struct Mirror {
    objects: Objects,
    /// Objects being re-listed, by watched name: what the re-list has returned so far.
    relisting: BTreeMap<String, Option<Files>>,
    /// Watched names whose first list has completed.
    listed: std::collections::BTreeSet<String>,
    /// How many watches feed the mirror; it is synced once all of them have listed.
    watches: usize,
}

impl Mirror {
    fn new(watches: usize) -> Self {
        Self {
            objects: Objects::new(),
            relisting: BTreeMap::new(),
            listed: Default::default(),
            watches,
        }
    }

    fn synced(&self) -> bool {
        self.listed.len() >= self.watches
    }

    /// Folds an event in; returns whether the visible state changed (and is complete).
    fn apply(&mut self, (watched, event): FilesEvent) -> bool {
        match event {
            Event::Apply((name, files)) => {
                self.objects.insert(name, files);
                self.synced()
            }
            Event::Delete((name, _)) => {
                self.objects.remove(&name);
                self.synced()
            }
            Event::Init => {
                self.relisting.insert(watched, None);
                false
            }
            Event::InitApply((_, files)) => {
                self.relisting.insert(watched, Some(files));
                false
            }
            Event::InitDone => {
                match self.relisting.remove(&watched).flatten() {
                    Some(files) => self.objects.insert(watched.clone(), files),
                    None => self.objects.remove(&watched),
                };
                self.listed.insert(watched);
                self.synced()
            }
        }
    }

    /// Looks a shard key up across all objects of the half (shard keys are unique within a half).
    fn find(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .values()
            .find_map(|files| files.get(key).cloned())
    }
}

/// Sleeps until `due`, or forever when nothing is due.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The API-watch configuration source.
#[derive(Clone)]
pub struct ApiSource {
    pub client: Client,
    pub namespace: String,
    pub gateway: String,
    pub debounce: Duration,
}

impl std::fmt::Debug for ApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSource")
            .field("namespace", &self.namespace)
            .field("gateway", &self.gateway)
            .field("debounce", &self.debounce)
            .finish_non_exhaustive()
    }
}

enum Change {
    Config(FilesEvent),
    Secrets(FilesEvent),
}

/// One watch on the object called `name`.
fn watch<K>(
    api: Api<K>,
    name: String,
    files: fn(&K) -> Files,
) -> impl Stream<Item = Result<FilesEvent, watcher::Error>> + Send
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let selector = format!("metadata.name={name}");
    watcher::watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .map(move |event| {
            event.map(|event| {
                (
                    name.clone(),
                    event.modify_map(|object| (object.name_any(), files(object))),
                )
            })
        })
}

/// Watches of every object one half may occupy, merged into one stream.
fn watch_half<K>(
    api: &Api<K>,
    gateway: &str,
    part: &str,
    files: fn(&K) -> Files,
) -> impl Stream<Item = Result<FilesEvent, watcher::Error>> + Send
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    futures::stream::select_all(
        (0..MAX_SHARDS).map(|i| watch(api.clone(), object_name(gateway, part, i), files).boxed()),
    )
}

/// `Event::map`-like helper: kube's `Event` has `modify` (in place) but the stream needs a new type.
trait EventMap<K> {
    fn modify_map<T>(self, f: impl FnMut(&K) -> T) -> Event<T>;
}

impl<K> EventMap<K> for Event<K> {
    fn modify_map<T>(self, mut f: impl FnMut(&K) -> T) -> Event<T> {
        match self {
            Event::Apply(object) => Event::Apply(f(&object)),
            Event::Delete(object) => Event::Delete(f(&object)),
            Event::Init => Event::Init,
            Event::InitApply(object) => Event::InitApply(f(&object)),
            Event::InitDone => Event::InitDone,
        }
    }
}

impl ApiSource {
    pub fn new(client: Client, namespace: impl Into<String>, gateway: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            gateway: gateway.into(),
            debounce: DEFAULT_DEBOUNCE,
        }
    }

    /// Watches until `shutdown`. Watch errors are retried with backoff (and logged); the served
    /// configuration is unaffected by them.
    pub async fn run(self, store: Arc<ConfigStore>, shutdown: CancellationToken) {
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let config_events = watch_half(&configmaps, &self.gateway, "config", configmap_files)
            .map(|e| e.map(Change::Config));
        let secret_events = watch_half(&secrets, &self.gateway, "secrets", secret_files)
            .map(|e| e.map(Change::Secrets));
        let mut changes = std::pin::pin!(futures::stream::select(config_events, secret_events));
        let mut config = Mirror::new(MAX_SHARDS);
        let mut secrets = Mirror::new(MAX_SHARDS);
        // When to assemble next: a short debounce after a change, a slower retry while half-written.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let changed = tokio::select! {
                () = shutdown.cancelled() => return,
                next = changes.next() => match next {
                    Some(Ok(Change::Config(event))) => config.apply(event),
                    Some(Ok(Change::Secrets(event))) => secrets.apply(event),
                    Some(Err(error)) => {
                        store.record_source_error(Source::Api, &format!("watching the gateway's ConfigMaps/Secrets: {error}"));
                        false
                    }
                    None => return,
                },
                () = sleep_until(due) => {
                    due = None;
                    if config.synced() && secrets.synced() && !self.assemble(&config, &secrets, &store) {
                        due = Some(tokio::time::Instant::now() + INCOMPLETE_RETRY);
                    }
                    false
                }
            };
            if changed {
                due = Some(tokio::time::Instant::now() + self.debounce);
            }
        }
    }

    /// Builds a snapshot from the mirrored objects and offers it; `false` when the update is half-written.
    fn assemble(&self, config: &Mirror, secrets: &Mirror, store: &ConfigStore) -> bool {
        let index = |mirror: &Mirror, part: &str| {
            mirror
                .objects
                .get(&object_name(&self.gateway, part, 0))
                .and_then(|files| files.get(INDEX_KEY).cloned())
        };
        let loaded =
            load_half::<GatewayConfig>("config", index(config, "config").as_deref(), |key| {
                config.find(key)
            })
            .and_then(|c| {
                Ok((
                    c,
                    load_half::<GatewaySecrets>(
                        "secrets",
                        index(secrets, "secrets").as_deref(),
                        |key| secrets.find(key),
                    )?,
                ))
            })
            .and_then(|(c, s)| join_halves(c, s));
        match loaded {
            Ok(snapshot) => {
                let _ = store.apply(&snapshot, Source::Api);
                true
            }
            Err(error) if is_transient(&error) || matches!(error, LoadError::MissingIndex) => {
                store.record_incomplete(Source::Api, &error);
                false
            }
            Err(error) => {
                store.record_failure(Source::Api, &error.to_string());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn mirror_replaces_an_object_only_when_its_relist_completes() {
        let event = |watched: &str, event| (watched.to_owned(), event);
        let mut mirror = Mirror::new(2);
        assert!(!mirror.apply(event("a", Event::Init)));
        assert!(!mirror.apply(event(
            "a",
            Event::InitApply(("a".into(), files(&[("index.json", "1")])))
        )));
        assert!(mirror.objects.is_empty(), "nothing visible before InitDone");
        assert!(
            !mirror.apply(event("a", Event::InitDone)),
            "one of two watches listed: not synced"
        );
        assert_eq!(mirror.find("index.json"), Some(b"1".to_vec()));
        mirror.apply(event("b", Event::Init));
        assert!(
            mirror.apply(event("b", Event::InitDone)),
            "both watches listed: synced"
        );
        assert!(mirror.apply(event(
            "b",
            Event::Apply(("b".into(), files(&[("shard-01", "x")])))
        )));
        assert_eq!(mirror.find("shard-01"), Some(b"x".to_vec()));
        assert!(mirror.apply(event("b", Event::Delete(("b".into(), BTreeMap::new())))));
        assert_eq!(mirror.find("shard-01"), None);
        // A re-list of "a" that no longer finds it removes only "a".
        mirror.apply(event(
            "b",
            Event::Apply(("b".into(), files(&[("shard-01", "y")]))),
        ));
        mirror.apply(event("a", Event::Init));
        assert!(mirror.apply(event("a", Event::InitDone)));
        assert_eq!(mirror.find("index.json"), None);
        assert_eq!(mirror.find("shard-01"), Some(b"y".to_vec()));
    }
}
