//! Per-route cache handles: one bounded in-memory cache per route (its `maxEntries`), or the one shared Redis
//! cache for every route. Survives configuration reloads so a reload does not empty the cache.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sluice_crds::config::CacheConfig;

use super::{MemoryCache, RedisCache, ResponseCache};
use crate::semantic::SemanticIndex;

/// Where entries live, and the handle each cached route uses.
#[derive(Debug)]
pub struct RouteCaches {
    redis: Option<Arc<RedisCache>>,
    memory: RwLock<HashMap<String, Arc<MemoryCache>>>,
    /// Semantic indexes, always in this process.
    semantic: RwLock<HashMap<String, Arc<SemanticIndex>>>,
}

impl RouteCaches {
    /// Entries kept in this process.
    pub fn in_memory() -> Self {
        Self {
            redis: None,
            memory: RwLock::new(HashMap::new()),
            semantic: RwLock::new(HashMap::new()),
        }
    }

    /// Entries kept in Redis, shared by every replica (and every route: keys include the route id). The
    /// route's `maxEntries` does not apply there; bound Redis with its own `maxmemory` policy.
    pub fn shared(redis: RedisCache) -> Self {
        Self {
            redis: Some(Arc::new(redis)),
            memory: RwLock::new(HashMap::new()),
            semantic: RwLock::new(HashMap::new()),
        }
    }

    /// The cache of `route_id`. In memory, the route keeps its cache (and entries) across reloads while its
    /// `maxEntries` is unchanged; a changed bound starts a new, empty cache.
    pub fn for_route(&self, route_id: &str, config: &CacheConfig) -> Arc<dyn ResponseCache> {
        if let Some(redis) = &self.redis {
            return redis.clone();
        }
        let existing = self
            .memory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route_id)
            .filter(|cache| cache.max_entries() == config.max_entries)
            .cloned();
        if let Some(cache) = existing {
            return cache;
        }
        let mut memory = self.memory.write().unwrap_or_else(PoisonError::into_inner);
        let cache = memory
            .entry(route_id.to_owned())
            .and_modify(|cache| {
                if cache.max_entries() != config.max_entries {
                    *cache = Arc::new(MemoryCache::new(config.max_entries));
                }
            })
            .or_insert_with(|| Arc::new(MemoryCache::new(config.max_entries)));
        cache.clone()
    }

    /// The semantic index of `route_id`, kept across reloads while its bound is unchanged.
    pub fn semantic_for_route(&self, route_id: &str, max_entries: u64) -> Arc<SemanticIndex> {
        let existing = self
            .semantic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route_id)
            .filter(|index| index.max_entries() == max_entries)
            .cloned();
        if let Some(index) = existing {
            return index;
        }
        let mut indexes = self
            .semantic
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let index = indexes
            .entry(route_id.to_owned())
            .and_modify(|index| {
                if index.max_entries() != max_entries {
                    *index = Arc::new(SemanticIndex::new(max_entries));
                }
            })
            .or_insert_with(|| Arc::new(SemanticIndex::new(max_entries)));
        index.clone()
    }

    /// Drops the in-memory caches of routes that are gone (call after a reload with the live route ids).
    pub fn retain<'a>(&self, live_routes: impl IntoIterator<Item = &'a str>) {
        let live: std::collections::HashSet<&str> = live_routes.into_iter().collect();
        self.memory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|route, _| live.contains(route.as_str()));
        self.semantic
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|route, _| live.contains(route.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::openai::{ChatCompletion, ChatRequest, Choice, FinishReason};
    use crate::cache::{CacheKey, CachedResponse, Tenant};
    use sluice_crds::v1alpha1::CacheScope;

    fn config(max_entries: u64) -> CacheConfig {
        CacheConfig {
            ttl_ms: 60_000,
            scope: CacheScope::Key,
            max_entries,
        }
    }

    fn entry() -> (CacheKey, Arc<CachedResponse>) {
        let request: ChatRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "q"}]}),
        )
        .unwrap();
        let completion = ChatCompletion {
            choices: vec![Choice {
                finish_reason: Some(FinishReason::Stop),
                ..Choice::default()
            }],
            ..ChatCompletion::default()
        };
        let key = CacheKey::chat("ns/a", "m", Tenant::Shared, &request);
        (key, Arc::new(CachedResponse::new(completion, "b").unwrap()))
    }

    #[tokio::test]
    async fn a_reload_keeps_entries_unless_the_bound_changes() {
        let caches = RouteCaches::in_memory();
        let (key, response) = entry();
        caches
            .for_route("ns/a", &config(10))
            .put(&key, response, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            caches
                .for_route("ns/a", &config(10))
                .get(&key)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            caches
                .for_route("ns/b", &config(10))
                .get(&key)
                .await
                .unwrap()
                .is_none(),
            "routes are separate"
        );
        assert!(
            caches
                .for_route("ns/a", &config(20))
                .get(&key)
                .await
                .unwrap()
                .is_none(),
            "new bound, new cache"
        );
    }

    #[tokio::test]
    async fn removed_routes_lose_their_cache() {
        let caches = RouteCaches::in_memory();
        let (key, response) = entry();
        caches
            .for_route("ns/a", &config(10))
            .put(&key, response, Duration::from_secs(60))
            .await
            .unwrap();
        caches.retain(["ns/other"]);
        assert!(
            caches
                .for_route("ns/a", &config(10))
                .get(&key)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn with_redis_every_route_uses_the_shared_cache() {
        let Some(server) = crate::cache::redis::tests::start_redis().await else {
            return;
        };
        let redis = RedisCache::connect(crate::cache::RedisCacheOptions::new(&server.url))
            .await
            .unwrap();
        let caches = RouteCaches::shared(redis);
        let (key, response) = entry();
        caches
            .for_route("ns/a", &config(10))
            .put(&key, response, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            caches
                .for_route("ns/a", &config(99))
                .get(&key)
                .await
                .unwrap()
                .is_some()
        );
    }
}
