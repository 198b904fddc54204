//! Shared by the operator tests: operators running in-process on their own runtime (so a test can kill
//! one outright), captured JSON logs, applying manifests, reading the published snapshot back, and
//! reading conditions and Events.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_crds::compile::{Inputs, SecretStore, compile};
use sluice_crds::config::{
    GATEWAY_LABEL, GatewayConfig, GatewaySecrets, INDEX_KEY, PART_LABEL, Snapshot, join_halves,
    load_half,
};
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use sluice_operator::{Operator, Settings};
use sluice_tests::harness::{ControlPlane, FIELD_MANAGER, wait_for};
use tokio_util::sync::CancellationToken;

/// How long an operator gets to publish a change in these tests (it takes well under a second; the
/// margin is for a 2-core machine that is also compiling).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Captured logs

/// Every log line of this test binary (all operators included), as JSON.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("log buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the JSON log capture (debug level for the operator) once per test binary.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("info,sluice_operator=debug")
            .with_writer(move || writer.clone())
            .finish();
        // Another subscriber may already be installed by a harness; then nothing is captured and
        // the log scan below fails loudly instead of passing on nothing.
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    });
}

/// The log lines captured so far.
pub fn captured_logs() -> Result<String> {
    let buffer = LOGS.get().context("capture_logs() was not called")?;
    let bytes = buffer
        .lock()
        .map_err(|_| anyhow::anyhow!("log buffer poisoned"))?
        .clone();
    String::from_utf8(bytes).context("logs are not UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Operators

/// Settings for an operator serving gateway `gateway` from `namespace` only, with a short lease so
/// failover tests are quick, and the operations endpoint on a free port.
pub fn settings(gateway: &str, namespace: &str, identity: &str) -> Settings {
    let mut settings = Settings::for_gateway(gateway, namespace);
    settings.watch_namespaces = vec![namespace.to_owned()];
    settings.identity = Some(identity.to_owned());
    settings.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.lease_duration = Duration::from_secs(4);
    settings.lease_renew_interval = Duration::from_secs(1);
    settings
}

/// An operator on its own thread and runtime: [`RunningOperator::kill`] drops every one of its tasks
/// where it stands, like `kill -9`; [`RunningOperator::stop`] is a graceful shutdown (SIGTERM).
pub struct RunningOperator {
    pub identity: String,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl RunningOperator {
    /// Starts an operator with `settings` against the shared control plane.
    pub fn start(settings: Settings) -> Result<Self> {
        let identity = settings.identity.clone().unwrap_or_default();
        let shutdown = CancellationToken::new();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (address_sender, address) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("operator-{identity}"))
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let result = runtime.block_on(async move {
                    let client = ControlPlane::shared()?.admin_client().await?;
                    let operator = Operator::bind(settings, client).await?;
                    let _ = address_sender.send(operator.metrics_addr()?);
                    tokio::select! {
                        result = operator.run(token) => result.map_err(anyhow::Error::from),
                        _ = killed => Ok(()),
                    }
                });
                // On a kill nothing of the operator runs again: its tasks are dropped unpolled.
                runtime.shutdown_background();
                result
            })?;
        let metrics_addr = address
            .recv_timeout(Duration::from_secs(60))
            .context("the operator did not bind its operations endpoint")?;
        Ok(Self {
            identity,
            metrics_addr,
            shutdown,
            kill: Some(kill),
            thread: Some(thread),
        })
    }

    /// Kills the operator: no graceful step, the Lease is left to expire.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.join()
    }

    /// Stops the operator gracefully (releasing its Lease) and waits for it.
    pub async fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        let thread = self.thread.take();
        tokio::task::spawn_blocking(move || match thread {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("operator thread panicked"))?,
            None => Ok(()),
        })
        .await?
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("operator thread panicked"))?,
            None => Ok(()),
        }
    }

    /// GETs a path of the operations endpoint.
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let response = reqwest::get(format!("http://{}{path}", self.metrics_addr)).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// The value of a metric sample line such as `sluice_operator_is_leader`, 0 when absent.
    pub async fn metric(&self, sample: &str) -> Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        Ok(text
            .lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|value| value.trim().parse().unwrap_or(0.0))
            .unwrap_or(0.0))
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Resources

/// Server-side applies `manifest` (a JSON object with apiVersion, kind and metadata) as the tests' field manager.
pub async fn apply<K>(client: &Client, manifest: Value) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let namespace = manifest["metadata"]["namespace"]
        .as_str()
        .context("manifest without namespace")?
        .to_owned();
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("manifest without name")?
        .to_owned();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&manifest),
    )
    .await
    .with_context(|| format!("apply {} {namespace}/{name}", K::kind(&())))
}

/// A Secret manifest with string data.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "stringData": data})
}

/// An LLMRoute manifest for `model` with one OpenAI backend whose key is `secret`/`key`.
pub fn route(
    namespace: &str,
    name: &str,
    gateway: &str,
    model: &str,
    secret: &str,
    key: &str,
) -> Value {
    serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gateway": gateway,
            "model": model,
            "backends": [{
                "name": "openai",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "credentialsRef": {"name": secret, "key": key},
            }],
        },
    })
}

/// A VirtualKey manifest with an operator-generated key.
pub fn virtual_key(namespace: &str, name: &str, gateway: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["gateway"] = Value::from(gateway);
    serde_json::json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "VirtualKey", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// A monthly Budget manifest.
pub fn budget(namespace: &str, name: &str, gateway: &str) -> Value {
    serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"gateway": gateway, "limitUSD": 100, "window": "monthly", "timeZone": "Europe/Berlin"},
    })
}

// ---------------------------------------------------------------------------------------------
// Published snapshot

/// The published objects of gateway `gateway` in `namespace`: ConfigMaps and Secrets by name.
pub async fn published_objects(
    client: &Client,
    namespace: &str,
    gateway: &str,
) -> Result<(Vec<ConfigMap>, Vec<Secret>)> {
    let selector = ListParams::default().labels(&format!("{GATEWAY_LABEL}={gateway}"));
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?
        .items;
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?
        .items;
    Ok((config_maps, secrets))
}

/// Reads the published snapshot of `gateway` back the way a gateway does: index, shards, checksums,
/// both halves with one hash.
pub async fn load_published(client: &Client, namespace: &str, gateway: &str) -> Result<Snapshot> {
    let (config_maps, secrets) = published_objects(client, namespace, gateway).await?;
    let part = |labels: Option<&BTreeMap<String, String>>, want: &str| {
        labels
            .and_then(|l| l.get(PART_LABEL))
            .is_some_and(|p| p == want)
    };
    let mut config_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for config_map in config_maps
        .iter()
        .filter(|c| part(c.metadata.labels.as_ref(), "config"))
    {
        for (key, value) in config_map.data.iter().flatten() {
            config_files.insert(key.clone(), value.clone().into_bytes());
        }
        for (key, value) in config_map.binary_data.iter().flatten() {
            config_files.insert(key.clone(), value.0.clone());
        }
    }
    let mut secret_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for secret in secrets
        .iter()
        .filter(|s| part(s.metadata.labels.as_ref(), "secrets"))
    {
        for (key, value) in secret.data.iter().flatten() {
            secret_files.insert(key.clone(), value.0.clone());
        }
    }
    let config = load_half::<GatewayConfig>(
        "config",
        config_files.get(INDEX_KEY).map(Vec::as_slice),
        |key| config_files.get(key).cloned(),
    )?;
    let secrets = load_half::<GatewaySecrets>(
        "secrets",
        secret_files.get(INDEX_KEY).map(Vec::as_slice),
        |key| secret_files.get(key).cloned(),
    )?;
    Ok(join_halves(config, secrets)?)
}

/// Waits until the published snapshot satisfies `check`, and returns it.
pub async fn wait_for_snapshot(
    client: &Client,
    namespace: &str,
    gateway: &str,
    what: &str,
    check: impl Fn(&Snapshot) -> bool,
) -> Result<Snapshot> {
    wait_for(what, PUBLISH_TIMEOUT, || async {
        let snapshot = load_published(client, namespace, gateway).await?;
        Ok(check(&snapshot).then_some(snapshot))
    })
    .await
}

/// Compiles what the API server holds in `namespace` for `gateway`, the way the operator should have.
pub async fn compile_from_api(client: &Client, namespace: &str, gateway: &str) -> Result<Snapshot> {
    let routes = Api::<LLMRoute>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let keys = Api::<VirtualKey>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let budgets = Api::<Budget>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let mut secrets = SecretStore::new();
    for secret in Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items
    {
        secrets.insert_secret(&secret);
    }
    let inputs = Inputs {
        gateway,
        routes: &routes,
        keys: &keys,
        budgets: &budgets,
        secrets: &secrets,
        now: chrono::Utc::now(),
    };
    Ok(compile(&inputs).snapshot)
}

// ---------------------------------------------------------------------------------------------
// Conditions and Events

/// `(status, reason, message)` of condition `type_`.
pub fn condition(conditions: &[Condition], type_: &str) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `K` `namespace/name` has condition `type_` with `status` (and `reason` when given),
/// with `observedGeneration` equal to the object's generation; returns the object.
pub async fn wait_for_condition<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    conditions_of: impl Fn(&K) -> Vec<Condition>,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let what = format!(
        "{} {namespace}/{name} to have {type_}={status} ({reason:?})",
        K::kind(&())
    );
    wait_for(&what, PUBLISH_TIMEOUT, || async {
        let object = api.get(name).await?;
        let generation = object.meta().generation;
        let ok = conditions_of(&object).iter().any(|c| {
            c.type_ == type_
                && c.status == status
                && reason.is_none_or(|reason| c.reason == reason)
                && c.observed_generation == generation
        });
        Ok(ok.then_some(object))
    })
    .await
}

/// Conditions of an LLMRoute.
pub fn route_conditions(route: &LLMRoute) -> Vec<Condition> {
    route
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Conditions of a VirtualKey.
pub fn key_conditions(key: &VirtualKey) -> Vec<Condition> {
    key.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Conditions of a Budget.
pub fn budget_conditions(budget: &Budget) -> Vec<Condition> {
    budget
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Waits for an Event about `kind` `name` with `reason` from the operator, and returns it.
pub async fn wait_for_event(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> Result<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("an Event {reason} for {kind} {namespace}/{name}"),
        PUBLISH_TIMEOUT,
        || async {
            let events = api.list(&ListParams::default()).await?.items;
            Ok(events.into_iter().find(|event| {
                let regarding = event.regarding.as_ref();
                regarding.and_then(|r| r.kind.as_deref()) == Some(kind)
                    && regarding.and_then(|r| r.name.as_deref()) == Some(name)
                    && event.reason.as_deref() == Some(reason)
                    && event.reporting_controller.as_deref() == Some("sluice-operator")
            }))
        },
    )
    .await
}

/// Fails with the text around the first occurrence of any of `secrets` in `haystack`.
pub fn assert_no_secret(what: &str, haystack: &str, secrets: &[String]) -> Result<()> {
    for secret in secrets {
        if let Some(at) = haystack.find(secret.as_str()) {
            let start = haystack[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            bail!(
                "{what} contains a secret (…{}…)",
                &haystack[start..at].replace('\n', " ")
            );
        }
    }
    Ok(())
}
