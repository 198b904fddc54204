//! In-process cache on `moka`: bounded in entries, with each entry's TTL checked against tokio's clock.
//!
//! moka expires entries on its own (real-time) clock, which cannot be paused; it is kept as the memory
//! reclaimer. Whether an entry is still served is decided by the deadline stored with it, read from
//! `tokio::time::Instant`, so tests drive expiry with a paused tokio clock and production sees real time.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use futures::future::{BoxFuture, FutureExt};
use moka::Expiry;
use moka::sync::Cache;
use tokio::time::Instant;

use super::{CacheError, CacheKey, CachedResponse, ResponseCache};

/// A bounded in-memory response cache (one per route, sized by the route's `maxEntries`).
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<CacheKey, Entry>,
    max_entries: u64,
}

#[derive(Clone)]
struct Entry {
    response: Arc<CachedResponse>,
    ttl: Duration,
    expires_at: Instant,
}

/// Tells moka each entry's own TTL.
struct EntryTtl;

impl Expiry<CacheKey, Entry> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &Entry,
        _created_at: StdInstant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &Entry,
        _updated_at: StdInstant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl MemoryCache {
    /// A cache holding at most `max_entries` responses (least valuable evicted first, per moka's TinyLFU).
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(EntryTtl)
                .build(),
            max_entries,
        }
    }

    /// The configured bound.
    pub fn max_entries(&self) -> u64 {
        self.max_entries
    }

    /// Entries currently held, after moka's pending maintenance (evictions) has run.
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// The live entry under `key`; an entry past its deadline is removed and reported as absent.
    pub fn lookup(&self, key: &CacheKey) -> Option<Arc<CachedResponse>> {
        let entry = self.entries.get(key)?;
        if Instant::now() >= entry.expires_at {
            self.entries.invalidate(key);
            return None;
        }
        Some(entry.response)
    }

    /// Stores `response` for `ttl`.
    pub fn store(&self, key: CacheKey, response: Arc<CachedResponse>, ttl: Duration) {
        let entry = Entry {
            response,
            ttl,
            expires_at: Instant::now() + ttl,
        };
        self.entries.insert(key, entry);
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl ResponseCache for MemoryCache {
    fn get<'a>(
        &'a self,
        key: &'a CacheKey,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, CacheError>> {
        futures::future::ready(Ok(self.lookup(key))).boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a CacheKey,
        response: Arc<CachedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        self.store(*key, response, ttl);
        futures::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChatCompletion, ChatRequest, Choice, FinishReason, ResponseMessage};
    use crate::cache::Tenant;

    fn key(text: &str) -> CacheKey {
        let request: ChatRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]}),
        )
        .unwrap();
        CacheKey::chat("ns/route", "m", Tenant::Shared, &request)
    }

    fn response(text: &str) -> Arc<CachedResponse> {
        let completion = ChatCompletion {
            choices: vec![Choice {
                message: ResponseMessage {
                    content: Some(text.into()),
                    ..ResponseMessage::default()
                },
                finish_reason: Some(FinishReason::Stop),
                ..Choice::default()
            }],
            ..ChatCompletion::default()
        };
        Arc::new(CachedResponse::new(completion, "primary").unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_at_their_ttl_on_the_tokio_clock() {
        let cache = MemoryCache::new(100);
        let (short, long) = (key("short"), key("long"));
        cache
            .put(&short, response("a"), Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .put(&long, response("b"), Duration::from_secs(600))
            .await
            .unwrap();

        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            cache.get(&short).await.unwrap().is_some(),
            "1 s before its TTL the entry is served"
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            cache.get(&short).await.unwrap().is_none(),
            "at its TTL the entry is gone"
        );
        assert!(
            cache.get(&long).await.unwrap().is_some(),
            "each entry has its own TTL"
        );

        tokio::time::advance(Duration::from_secs(540)).await;
        assert!(cache.get(&long).await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_put_replaces_the_entry_and_restarts_its_ttl() {
        let cache = MemoryCache::new(100);
        let key = key("q");
        cache
            .put(&key, response("old"), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        cache
            .put(&key, response("new"), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        let hit = cache.get(&key).await.unwrap().unwrap();
        assert_eq!(
            hit.completion.choices[0].message.content.as_deref(),
            Some("new")
        );
    }

    #[test]
    fn the_entry_bound_holds() {
        let cache = MemoryCache::new(50);
        for index in 0..500 {
            cache.store(
                key(&index.to_string()),
                response("r"),
                Duration::from_secs(60),
            );
        }
        let held = cache.entry_count();
        assert!(held <= 50, "{held} entries held, bound 50");
        assert!(held > 0);
    }
}
