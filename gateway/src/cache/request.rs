//! One chat request's use of its route's cache: the directive from its headers, its key, the lookup, the
//! store after a complete answer, and the metrics of each. Backend failures count as misses, never fail
//! the request.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::{
    CacheDirective, CacheKey, CacheStatus, CachedResponse, ResponseCache, RouteCaches, Tenant,
};
use crate::api::openai::{ChatCompletion, ChatRequest};
use crate::config::Route;
use crate::policy_metrics::PolicyMetrics;
use crate::semantic::SemanticIndex;

/// The cache as one request uses it.
#[derive(Debug)]
pub struct RequestCache {
    cache: Arc<dyn ResponseCache>,
    key: CacheKey,
    ttl: Duration,
    directive: CacheDirective,
    route: Arc<str>,
    metrics: PolicyMetrics,
    /// The semantic index, the request's partition and prompt embedding, when the route has one.
    semantic: Option<(Arc<SemanticIndex>, CacheKey, Vec<f32>)>,
}

impl RequestCache {
    /// The request's cache use, or `None` when its route has no cache policy. `request` must be the
    /// upstream-facing request (parameters applied, PII redacted); `key_id` is the caller's key.
    pub fn new(
        caches: &RouteCaches,
        route: &Route,
        key_id: &str,
        headers: &HeaderMap,
        request: &ChatRequest,
        metrics: &PolicyMetrics,
    ) -> Option<Self> {
        let policy = route.config.cache.as_ref()?;
        let tenant = Tenant::for_scope(policy.scope, key_id);
        Some(Self {
            cache: caches.for_route(&route.id, policy),
            key: CacheKey::chat(&route.id, &route.model, tenant, request),
            ttl: Duration::from_millis(policy.ttl_ms),
            directive: CacheDirective::from_headers(headers),
            route: route.id.clone(),
            metrics: metrics.clone(),
            semantic: None,
        })
    }

    /// Looks the request up (unless its directive skips the lookup) and counts the outcome; `Err` carries
    /// the status to report for a request that goes upstream.
    pub async fn lookup(&self) -> Result<Arc<CachedResponse>, CacheStatus> {
        let status = match self.directive {
            CacheDirective::Bypass => CacheStatus::Bypass,
            CacheDirective::Refresh => CacheStatus::Miss,
            CacheDirective::Use => match self.cache.get(&self.key).await {
                Ok(Some(entry)) => {
                    self.metrics.record_cache(&self.route, CacheStatus::Hit);
                    return Ok(entry);
                }
                Ok(None) => CacheStatus::Miss,
                Err(error) => {
                    tracing::warn!(route = %self.route, error = %error, "cache lookup failed; serving as a miss");
                    self.metrics.record_cache_error("get", error.metric_label());
                    CacheStatus::Miss
                }
            },
        };
        self.metrics.record_cache(&self.route, status);
        Err(status)
    }

    /// Whether an answer will be stored (so a stream is worth assembling).
    pub fn writes(&self) -> bool {
        self.directive.writes()
    }

    /// Whether the request may be answered from the cache.
    pub fn reads(&self) -> bool {
        self.directive.reads()
    }

    /// Indexes the stored answer under `vector` in `index` too.
    pub fn attach_semantic(
        &mut self,
        index: Arc<SemanticIndex>,
        partition: CacheKey,
        vector: Vec<f32>,
    ) {
        self.semantic = Some((index, partition, vector));
    }

    /// Stores a complete answer from `backend` (within the backend's own timeout); answers that did not
    /// end normally are not cached. Awaited before a JSON answer is sent, so a client's next request sees
    /// its own entry; a stream's store runs in a task of its own.
    pub async fn store(self, completion: ChatCompletion, backend: &str) {
        if !self.directive.writes() {
            return;
        }
        let Some(entry) = CachedResponse::new(completion, backend) else {
            return;
        };
        let entry = Arc::new(entry);
        if let Some((index, partition, vector)) = &self.semantic {
            index.insert(*partition, vector, entry.clone(), self.ttl);
        }
        if let Err(error) = self.cache.put(&self.key, entry, self.ttl).await {
            tracing::warn!(route = %self.route, error = %error, "cache store failed");
            self.metrics.record_cache_error("put", error.metric_label());
        }
    }
}
