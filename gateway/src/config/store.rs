//! The served configuration and its reload bookkeeping: validate, swap atomically, keep the last good one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use sluice_crds::config::{LoadError, Snapshot};

use super::runtime::{BuildContext, RuntimeConfig};
use super::state::StateRegistry;
use crate::metrics::Metrics;
use crate::reliability::ReliabilityRegistry;
use crate::upstream::Transport;

/// How long a half-written update may stay half-written before it is reported as an error: the operator
/// writes both halves within a second; kubelet may refresh the two volumes up to a sync period apart.
pub const INCOMPLETE_GRACE: Duration = Duration::from_secs(90);

/// Where a configuration came from (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Mounted ConfigMap/Secret directories.
    Directory,
    /// Watching ConfigMaps and Secrets through the Kubernetes API.
    Api,
    /// A folder of manifests compiled in-process.
    Local,
    /// Handed over directly (embedding, tests).
    Static,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Directory => "directory",
            Source::Api => "api",
            Source::Local => "local",
            Source::Static => "static",
        }
    }
}

/// The outcome of offering a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The snapshot is now served.
    Swapped,
    /// The same hash is already served.
    Unchanged,
}

/// What `/readyz` reports about configuration loading.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Hash of the served configuration.
    pub config_hash: Option<String>,
    pub source: Option<Source>,
    /// Unix seconds of the last swap.
    pub last_success_at: Option<u64>,
    /// The last attempt's error, while the most recent attempt failed (the previous configuration is still
    /// served).
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
}

/// Holds the served configuration.
#[derive(Debug)]
pub struct ConfigStore {
    current: ArcSwapOption<RuntimeConfig>,
    status: Mutex<ReloadStatus>,
    /// Serializes builds so two sources (or a burst of events) never race a swap.
    build_lock: Mutex<()>,
    /// Since when loads have found a half-written update.
    incomplete_since: Mutex<Option<Instant>>,
    /// The last snapshot refused, and why: offering it again is answered without rebuilding or logging.
    rejected: Mutex<Option<(String, String)>>,
    transport: Arc<Transport>,
    state: StateRegistry,
    reliability: ReliabilityRegistry,
    metrics: Arc<Metrics>,
    /// Called after every swap with the configuration now served (e.g. to drop caches of deleted routes).
    swap_hooks: SwapHooks,
}

/// A callback run after a swap.
pub type SwapHook = Box<dyn Fn(&RuntimeConfig) + Send + Sync>;

#[derive(Default)]
struct SwapHooks(Mutex<Vec<SwapHook>>);

impl std::fmt::Debug for SwapHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "SwapHooks({count})")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ConfigStore {
    pub fn new(transport: Arc<Transport>, metrics: Arc<Metrics>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            status: Mutex::new(ReloadStatus::default()),
            build_lock: Mutex::new(()),
            incomplete_since: Mutex::new(None),
            rejected: Mutex::new(None),
            transport,
            state: StateRegistry::default(),
            reliability: ReliabilityRegistry::default(),
            metrics,
            swap_hooks: SwapHooks::default(),
        }
    }

    /// Runs `hook` after every future swap (under the build lock, so hooks see swaps in order).
    pub fn on_swap(&self, hook: SwapHook) {
        self.swap_hooks
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// The served configuration; hold the `Arc` for the whole request.
    pub fn current(&self) -> Option<Arc<RuntimeConfig>> {
        self.current.load_full()
    }

    /// Hash of the served configuration.
    pub fn current_hash(&self) -> Option<Arc<str>> {
        self.current
            .load()
            .as_ref()
            .map(|config| config.hash.clone())
    }

    /// Loading state for `/readyz`.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Validates and serves `snapshot` unless it is already served. On error the previous configuration
    /// stays, and the error is logged, counted and shown on `/readyz`.
    pub fn apply(&self, snapshot: &Snapshot, source: Source) -> Result<Applied, String> {
        let _guard = self
            .build_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self
            .incomplete_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if self.current_hash().as_deref() == Some(snapshot.hash.as_str()) {
            self.metrics.record_reload(source.as_str(), "unchanged");
            self.confirm_current();
            return Ok(Applied::Unchanged);
        }
        if let Some((hash, message)) =
            &*self.rejected.lock().unwrap_or_else(PoisonError::into_inner)
            && *hash == snapshot.hash
        {
            return Err(message.clone());
        }
        let ctx = BuildContext {
            transport: &self.transport,
            state: &self.state,
            reliability: &self.reliability,
            metrics: &self.metrics,
        };
        match RuntimeConfig::build(snapshot, ctx) {
            Ok(config) => {
                for problem in &config.key_problems {
                    tracing::warn!(key = %problem.key_id, problem = problem.problem, "a published key hash was left out");
                }
                let routes = config.routes.len();
                let keys = config.keys.len();
                let live = config.backend_ids();
                let config = Arc::new(config);
                let previous = self.current.swap(Some(config.clone()));
                self.state.retain(&live);
                self.reliability.retain(&live);
                for hook in self
                    .swap_hooks
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                {
                    hook(&config);
                }
                let now = unix_now();
                self.metrics.record_reload(source.as_str(), "success");
                self.metrics.set_config_hash(&snapshot.hash, now as f64);
                let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                *status = ReloadStatus {
                    config_hash: Some(snapshot.hash.clone()),
                    source: Some(source),
                    last_success_at: Some(now),
                    last_error: None,
                    last_error_at: None,
                };
                tracing::info!(
                    hash = %snapshot.hash,
                    previous = previous.as_ref().map(|p| &*p.hash),
                    source = source.as_str(),
                    routes,
                    keys,
                    "configuration applied"
                );
                Ok(Applied::Swapped)
            }
            Err(invalid) => {
                let message = invalid.to_string();
                self.record_failure(source, &format!("snapshot {}: {message}", snapshot.hash));
                *self.rejected.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((snapshot.hash.clone(), message.clone()));
                Err(message)
            }
        }
    }

    /// Records a failed load (the snapshot could not even be read); the served configuration stays.
    pub fn record_failure(&self, source: Source, message: &str) {
        self.metrics.record_reload(source.as_str(), "error");
        let serving = self.current_hash();
        tracing::error!(
            source = source.as_str(),
            error = message,
            serving = serving.as_deref(),
            "configuration rejected; keeping the last good configuration"
        );
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_error = Some(message.to_owned());
        status.last_error_at = Some(unix_now());
    }

    /// A source found the served snapshot again: whatever failed before has recovered, so `/readyz` stops
    /// reporting it.
    pub fn confirm_current(&self) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_error = None;
        status.last_error_at = None;
    }

    /// Records that a source cannot read at all (a directory that cannot be watched, a watch the API server
    /// refuses): shown on `/readyz` and counted; the served configuration, if any, stays.
    pub fn record_source_error(&self, source: Source, message: &str) {
        self.metrics.record_reload(source.as_str(), "error");
        tracing::warn!(
            source = source.as_str(),
            error = message,
            "the configuration source failed; retrying"
        );
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_error = Some(message.to_owned());
        status.last_error_at = Some(unix_now());
    }

    /// Records a load that found an update half-written (halves of different snapshots, a shard still
    /// missing): normal for a moment during an update, so it is counted but not reported as an error.
    /// After [`INCOMPLETE_GRACE`] it is reported as an error.
    pub fn record_incomplete(&self, source: Source, error: &LoadError) {
        let since = *self
            .incomplete_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Instant::now);
        if since.elapsed() > INCOMPLETE_GRACE {
            self.record_failure(
                source,
                &format!(
                    "update incomplete for {}s: {error}",
                    since.elapsed().as_secs()
                ),
            );
            return;
        }
        self.metrics.record_reload(source.as_str(), "incomplete");
        tracing::info!(source = source.as_str(), reason = %error, "configuration update in progress; will retry");
    }
}

/// Whether a load error means "an update is being written" rather than "this configuration is broken".
pub fn is_transient(error: &LoadError) -> bool {
    matches!(
        error,
        LoadError::HashMismatch { .. }
            | LoadError::MissingShard { .. }
            | LoadError::ShardChecksum { .. }
    )
}
