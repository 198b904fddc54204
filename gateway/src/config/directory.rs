//! Configuration from mounted ConfigMap/Secret volumes in kubelet's layout, watched for updates.
//!
//! Kubelet writes each update into a fresh timestamped directory and then atomically renames the `..data`
//! symlink to point at it. Reading through one resolved `..data` target gives a consistent view of a
//! volume; the shard checksums and the shared snapshot hash catch the moment when one volume has been
//! updated and the other has not yet. Events are debounced, and a periodic re-check covers file systems
//! whose change events get lost.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sluice_crds::config::{
    GatewayConfig, GatewaySecrets, INDEX_KEY, LoadError, PublishIndex, Snapshot, join_halves,
    load_half,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::store::{ConfigStore, Source, is_transient};

/// Quiet time after the last file event before reloading: kubelet's swap produces a burst of events, and
/// the operator updates the ConfigMap and the Secret separately.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Re-check interval when no event arrives (cheap: two small index files are read and compared).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);

/// Why the mounted files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The directory to read a volume's files from: the target of `..data` when kubelet manages it, the
/// directory itself otherwise (a plain folder, e.g. in tests or `docker run -v`).
fn resolve(dir: &Path) -> Result<PathBuf, ReadError> {
    let data = dir.join("..data");
    match std::fs::canonicalize(&data) {
        Ok(target) => Ok(target),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(dir.to_path_buf()),
        Err(source) => Err(ReadError::Io { path: data, source }),
    }
}

fn read_index(dir: &Path) -> Result<Option<Vec<u8>>, ReadError> {
    let path = dir.join(INDEX_KEY);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReadError::Io { path, source }),
    }
}

fn read_half<T: serde::de::DeserializeOwned>(
    dir: &Path,
    part: &'static str,
) -> Result<(PublishIndex, T), ReadError> {
    let dir = resolve(dir)?;
    let index = read_index(&dir)?;
    Ok(load_half(part, index.as_deref(), |key| {
        std::fs::read(dir.join(key)).ok()
    })?)
}

/// Reads both volumes into a snapshot.
pub fn read_snapshot(config_dir: &Path, secrets_dir: &Path) -> Result<Snapshot, ReadError> {
    let config = read_half::<GatewayConfig>(config_dir, "config")?;
    let secrets = read_half::<GatewaySecrets>(secrets_dir, "secrets")?;
    Ok(join_halves(config, secrets)?)
}

/// The snapshot hash each volume's index announces, if readable (a cheap "has anything changed?" check).
fn announced_hashes(config_dir: &Path, secrets_dir: &Path) -> Option<(String, String)> {
    let hash = |dir: &Path| -> Option<String> {
        let index = read_index(&resolve(dir).ok()?).ok()??;
        Some(
            serde_json::from_slice::<PublishIndex>(&index)
                .ok()?
                .snapshot_hash,
        )
    };
    Some((hash(config_dir)?, hash(secrets_dir)?))
}

/// Whether a watcher event may mean new content. Reads (ours included: inotify reports opening a file in
/// a watched directory) are not changes and would otherwise make every reload trigger the next; a watcher
/// error is treated as a change so the next read finds out what happened.
pub(crate) fn is_change(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(event) => !matches!(event.kind, notify::EventKind::Access(_)),
        Err(_) => true,
    }
}

/// The mounted-volume configuration source.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    pub config_dir: PathBuf,
    pub secrets_dir: PathBuf,
    pub debounce: Duration,
    pub resync: Duration,
}

impl DirectorySource {
    pub fn new(config_dir: PathBuf, secrets_dir: PathBuf) -> Self {
        Self {
            config_dir,
            secrets_dir,
            debounce: DEFAULT_DEBOUNCE,
            resync: DEFAULT_RESYNC,
        }
    }

    /// Reads the volumes and offers the snapshot to the store, unless both already announce the served
    /// hash. Blocking (file I/O, decompression, validation).
    pub fn reload(&self, store: &ConfigStore) {
        if let (Some((config, secrets)), Some(current)) = (
            announced_hashes(&self.config_dir, &self.secrets_dir),
            store.current_hash(),
        ) && config == secrets
            && *config == *current
        {
            store.confirm_current();
            return;
        }
        match read_snapshot(&self.config_dir, &self.secrets_dir) {
            Ok(snapshot) => {
                // A rejected snapshot is already logged, counted and shown on /readyz by the store.
                let _ = store.apply(&snapshot, Source::Directory);
            }
            Err(ReadError::Load(error)) if is_transient(&error) => {
                store.record_incomplete(Source::Directory, &error)
            }
            Err(error) => store.record_failure(Source::Directory, &error.to_string()),
        }
    }

    /// Loads once, then watches both directories until `shutdown`.
    pub async fn run(
        self,
        store: Arc<ConfigStore>,
        shutdown: CancellationToken,
    ) -> Result<(), notify::Error> {
        let (events, mut changes) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if is_change(&event) {
                    let _ = events.send(());
                }
            })?;
        watcher.watch(&self.config_dir, RecursiveMode::NonRecursive)?;
        watcher.watch(&self.secrets_dir, RecursiveMode::NonRecursive)?;
        let source = Arc::new(self);
        Self::reload_blocking(&source, &store).await;
        let mut resync = tokio::time::interval(source.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some(()) = changes.recv() => {
                    // Debounce: wait until the burst is over.
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(source.debounce) => break,
                            Some(()) = changes.recv() => {}
                        }
                    }
                    Self::reload_blocking(&source, &store).await;
                }
                _ = resync.tick() => Self::reload_blocking(&source, &store).await,
            }
        }
    }

    async fn reload_blocking(source: &Arc<Self>, store: &Arc<ConfigStore>) {
        let (source, store) = (source.clone(), store.clone());
        if let Err(error) = tokio::task::spawn_blocking(move || source.reload(&store)).await {
            tracing::error!(%error, "configuration reload task failed");
        }
    }
}
