//! State shared by the server's connections and the test's handle: settings, keys, script, log, counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::behavior::Script;
use super::config::MockConfig;
use super::fixed::FixedResponses;
use super::record::RecordedRequest;
use super::route::Provider;
use super::stats::StatsCell;

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: MockConfig,
    /// Present in fixed mode: the answers precomputed at start-up.
    pub fixed: Option<FixedResponses>,
    pub stats: StatsCell,
    keys: Mutex<Keys>,
    script: Mutex<Script>,
    log: Mutex<Vec<RecordedRequest>>,
    seq: AtomicU64,
}

/// Expected API keys: one for every provider, overridable per provider. No key: any non-empty key passes.
#[derive(Debug, Default)]
struct Keys {
    all: Option<String>,
    per_provider: HashMap<Provider, String>,
}

/// Locks a mutex even if a panicking test thread poisoned it: the data is still usable for assertions.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: MockConfig) -> Self {
        let fixed = config.fixed.then(|| FixedResponses::new(&config));
        Self {
            config,
            fixed,
            stats: StatsCell::default(),
            keys: Mutex::default(),
            script: Mutex::default(),
            log: Mutex::default(),
            seq: AtomicU64::new(0),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn expected_key(&self, provider: Provider) -> Option<String> {
        let keys = lock(&self.keys);
        keys.per_provider
            .get(&provider)
            .or(keys.all.as_ref())
            .cloned()
    }

    pub fn set_key(&self, provider: Option<Provider>, key: String) {
        let mut keys = lock(&self.keys);
        match provider {
            Some(provider) => {
                keys.per_provider.insert(provider, key);
            }
            None => keys.all = Some(key),
        }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }

    pub fn record(&self, request: RecordedRequest) {
        if self.config.record {
            lock(&self.log).push(request);
        }
    }

    pub fn log(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        lock(&self.log)
    }
}
