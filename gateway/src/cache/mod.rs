//! Exact-match response cache: keys, the [`ResponseCache`] trait with in-memory and Redis backends, per-route
//! cache handles, request directives, and the conversions between streamed and complete responses that let
//! one entry serve both.
//!
//! Pipeline, per chat request on a route with a cache policy:
//! 1. `CacheDirective::from_headers` — skip the lookup (`refresh`) or the cache entirely (`bypass`);
//! 2. `CacheKey::chat` on the upstream-facing request (after parameters and PII redaction);
//! 3. `RouteCaches::for_route(..).get(&key)` — on a hit, answer with the stored completion as JSON, or as a
//!    stream through `replay_chunks`, with `x-sluice-cache: hit`; nothing is billed;
//! 4. on a miss, after a complete upstream answer (a `StreamAssembler` rebuilds it from a stream),
//!    `CachedResponse::new` + `put` with the policy's TTL.

mod assemble;
mod directive;
mod key;
mod memory;
mod redis;
mod replay;
mod request;
mod store;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::openai::{ChatCompletion, FinishReason};

pub use assemble::StreamAssembler;
pub use directive::{CACHE_HEADER, CacheDirective, CacheStatus};
pub use key::{CacheKey, Tenant};
pub use memory::MemoryCache;
pub use redis::{RedisCache, RedisCacheOptions};
pub use replay::replay_chunks;
pub use request::RequestCache;
pub use store::RouteCaches;

/// What an entry holds: the canonical (OpenAI-shaped) completion, served as JSON or replayed as a stream on
/// either surface, and which backend produced it so a hit can be accounted as cost saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedResponse {
    pub completion: ChatCompletion,
    /// Name of the route backend that answered.
    pub backend: String,
}

impl CachedResponse {
    /// An entry for `completion`, or `None` when it must not be cached: no choices, or a choice that did not
    /// end normally (no finish reason, a content filter, a provider-specific reason).
    pub fn new(completion: ChatCompletion, backend: impl Into<String>) -> Option<Self> {
        let complete = !completion.choices.is_empty()
            && completion.choices.iter().all(|choice| {
                matches!(
                    choice.finish_reason,
                    Some(
                        FinishReason::Stop
                            | FinishReason::Length
                            | FinishReason::ToolCalls
                            | FinishReason::FunctionCall
                    )
                )
            });
        complete.then(|| Self {
            completion,
            backend: backend.into(),
        })
    }
}

/// A cache backend failed. Callers treat every error as a miss (and log it): the cache never fails a request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis command failed: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cached entry does not decode: {0}")]
    Decode(serde_json::Error),
    #[error("response does not encode: {0}")]
    Encode(serde_json::Error),
}

impl CacheError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CacheError::Redis(_) => "redis",
            CacheError::Timeout(_) => "timeout",
            CacheError::Decode(_) => "decode",
            CacheError::Encode(_) => "encode",
        }
    }
}

/// A store of responses by key, each with its own time to live.
pub trait ResponseCache: Send + Sync + fmt::Debug {
    /// The live entry under `key`, if any.
    fn get<'a>(
        &'a self,
        key: &'a CacheKey,
    ) -> BoxFuture<'a, Result<Option<Arc<CachedResponse>>, CacheError>>;

    /// Stores `response` under `key` for `ttl`, replacing any entry.
    fn put<'a>(
        &'a self,
        key: &'a CacheKey,
        response: Arc<CachedResponse>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{Choice, ResponseMessage};

    fn completion(reasons: &[Option<FinishReason>]) -> ChatCompletion {
        ChatCompletion {
            choices: reasons
                .iter()
                .map(|reason| Choice {
                    message: ResponseMessage::default(),
                    finish_reason: reason.clone(),
                    ..Choice::default()
                })
                .collect(),
            ..ChatCompletion::default()
        }
    }

    #[test]
    fn only_normally_finished_responses_are_cacheable() {
        let cacheable = [
            vec![Some(FinishReason::Stop)],
            vec![Some(FinishReason::Length), Some(FinishReason::ToolCalls)],
        ];
        for reasons in cacheable {
            assert!(
                CachedResponse::new(completion(&reasons), "b").is_some(),
                "{reasons:?}"
            );
        }
        let not_cacheable = [
            vec![],
            vec![None],
            vec![Some(FinishReason::ContentFilter)],
            vec![
                Some(FinishReason::Stop),
                Some(FinishReason::Other("abort".into())),
            ],
        ];
        for reasons in not_cacheable {
            assert!(
                CachedResponse::new(completion(&reasons), "b").is_none(),
                "{reasons:?}"
            );
        }
    }
}
