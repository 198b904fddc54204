//! Watches and in-memory caches (reflector stores) of everything the operator reads: the three kinds
//! of one gateway, the Secrets they may reference, and the operator's own published objects.
//!
//! Every watch event wakes the control loop through one [`Notify`]; the loop itself decides, by
//! fingerprinting what it read, whether anything relevant changed. Caches run on every replica, so a
//! new leader starts from warm caches.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use sluice_crds::config::GATEWAY_LABEL;
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::settings::Settings;

/// Label the operator puts on everything it writes, and selects its outputs by.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`], also the field manager and the event reporter.
pub const MANAGER: &str = "sluice-operator";

/// One cache per watched namespace (or one for all), read as one.
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    stores: Vec<Store<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("kind", &K::kind(&()))
            .field("stores", &self.stores.len())
            .finish()
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    /// The object `namespace/name`, if cached.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectRef::new(name).within(namespace);
        self.stores.iter().find_map(|store| store.get(&key))
    }
}

/// The caches the operator works from.
#[derive(Clone, Debug)]
pub struct Caches {
    pub routes: Cache<LLMRoute>,
    pub keys: Cache<VirtualKey>,
    pub budgets: Cache<Budget>,
    /// Secrets in the watched namespaces: provider credentials, bring-your-own and generated keys.
    pub secrets: Cache<Secret>,
    /// Published ConfigMaps of this gateway.
    pub output_config_maps: Cache<ConfigMap>,
    /// Published Secrets of this gateway.
    pub output_secrets: Cache<Secret>,
    unsynced: Arc<AtomicUsize>,
    synced: Arc<Notify>,
}

impl Caches {
    /// Whether every cache has completed its initial list.
    pub fn is_synced(&self) -> bool {
        self.unsynced.load(Ordering::Acquire) == 0
    }

    /// Waits until every cache has completed its initial list.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            if self.is_synced() {
                return;
            }
            notified.await;
        }
    }
}

/// Starts every watch on `tasks`; each event wakes `wake`.
pub fn start(
    client: &Client,
    settings: &Settings,
    wake: &Arc<Notify>,
    tasks: &mut JoinSet<()>,
) -> Caches {
    let gateway_selector =
        watcher::Config::default().fields(&format!("spec.gateway={}", settings.gateway_name));
    let output_selector = watcher::Config::default().labels(&format!(
        "{GATEWAY_LABEL}={},{MANAGED_BY_LABEL}={MANAGER}",
        settings.gateway_name
    ));
    let namespaces = settings.watched_namespaces();
    let unsynced = Arc::new(AtomicUsize::new(0));
    let synced = Arc::new(Notify::new());
    let mut spawner = Spawner {
        client,
        wake,
        tasks,
        unsynced: &unsynced,
        synced: &synced,
    };
    let routes = spawner.watch_namespaces::<LLMRoute>(namespaces.as_deref(), &gateway_selector);
    let keys = spawner.watch_namespaces::<VirtualKey>(namespaces.as_deref(), &gateway_selector);
    let budgets = spawner.watch_namespaces::<Budget>(namespaces.as_deref(), &gateway_selector);
    let secrets =
        spawner.watch_namespaces::<Secret>(namespaces.as_deref(), &watcher::Config::default());
    let output_config_maps = spawner.watch::<ConfigMap>(
        Api::namespaced(client.clone(), &settings.gateway_namespace),
        output_selector.clone(),
    );
    let output_secrets = spawner.watch::<Secret>(
        Api::namespaced(client.clone(), &settings.gateway_namespace),
        output_selector,
    );
    Caches {
        routes,
        keys,
        budgets,
        secrets,
        output_config_maps: Cache {
            stores: vec![output_config_maps],
        },
        output_secrets: Cache {
            stores: vec![output_secrets],
        },
        unsynced,
        synced,
    }
}

struct Spawner<'a> {
    client: &'a Client,
    wake: &'a Arc<Notify>,
    tasks: &'a mut JoinSet<()>,
    unsynced: &'a Arc<AtomicUsize>,
    synced: &'a Arc<Notify>,
}

impl Spawner<'_> {
    fn watch_namespaces<K>(
        &mut self,
        namespaces: Option<&[String]>,
        config: &watcher::Config,
    ) -> Cache<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let stores = match namespaces {
            None => vec![self.watch(Api::<K>::all(self.client.clone()), config.clone())],
            Some(namespaces) => namespaces
                .iter()
                .map(|namespace| {
                    self.watch(
                        Api::<K>::namespaced(self.client.clone(), namespace),
                        config.clone(),
                    )
                })
                .collect(),
        };
        Cache { stores }
    }

    fn watch<K>(&mut self, api: Api<K>, config: watcher::Config) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        ObjectRef<K>: Hash + Eq,
    {
        let (reader, writer) = reflector::store::<K>();
        let wake = Arc::clone(self.wake);
        let unsynced = Arc::clone(self.unsynced);
        let synced = Arc::clone(self.synced);
        unsynced.fetch_add(1, Ordering::AcqRel);
        let kind = K::kind(&()).into_owned();
        // managedFields can be larger than the object and are never read here.
        let stream = watcher(api, config).default_backoff().map(|event| {
            event.map(|event| event.modify(|object| object.managed_fields_mut().clear()))
        });
        self.tasks.spawn(async move {
            let mut first_sync = true;
            let mut events = std::pin::pin!(reflector::reflector(writer, stream));
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if std::mem::take(&mut first_sync) && unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
                            synced.notify_waiters();
                        }
                        wake.notify_one();
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => wake.notify_one(),
                    Err(error) => tracing::warn!(%kind, error = %error, "watch failed; retrying with back-off"),
                }
            }
        });
        reader
    }
}
