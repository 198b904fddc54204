//! Semantic cache: a prompt is embedded through an embeddings route of the gateway itself, and a bounded
//! index per route finds a stored answer whose prompt is close enough (cosine similarity at or above the
//! route's threshold) — only within the same partition: tenant, route, model and every request field
//! other than the messages, so tenants never mix and different sampling never shares answers.
//!
//! The index lives in each gateway process (also when exact-match entries are in Redis), holds at most
//! `maxEntries` prompts per route (the oldest go first) and honours the cache TTL. Embedding calls go
//! through the embeddings route's own candidates (its region rules apply, intersected with the key's);
//! they are upstream calls of that route in its metrics, not billed to the caller's key.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::api::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest};
use crate::auth::Key;
use crate::cache::{CacheKey, CachedResponse, RequestCache, RouteCaches, Tenant};
use crate::config::{Route, RuntimeConfig};
use crate::metrics::Metrics;
use crate::upstream::dispatch::Dispatch;

/// Route-id prefix of partition keys, so a partition never equals an exact-match key.
const PARTITION_PREFIX: &str = "semantic:";

/// One route's index of prompt embeddings and their answers.
#[derive(Debug)]
pub struct SemanticIndex {
    max_entries: u64,
    entries: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    partition: CacheKey,
    /// Unit length, so the dot product is the cosine similarity.
    vector: Vec<f32>,
    response: Arc<CachedResponse>,
    expires_at: Instant,
}

impl SemanticIndex {
    pub fn new(max_entries: u64) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    pub fn max_entries(&self) -> u64 {
        self.max_entries
    }

    /// The live answer in `partition` whose prompt is most similar to `vector`, if that similarity
    /// reaches `threshold`; with the similarity.
    pub fn find(
        &self,
        partition: &CacheKey,
        vector: &[f32],
        threshold: f64,
    ) -> Option<(Arc<CachedResponse>, f64)> {
        let query = normalized(vector)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|entry| entry.expires_at > now);
        entries
            .iter()
            .filter(|entry| entry.partition == *partition && entry.vector.len() == query.len())
            .map(|entry| (entry, dot(&entry.vector, &query)))
            .filter(|(_, similarity)| *similarity >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(entry, similarity)| (entry.response.clone(), similarity))
    }

    /// Indexes `response` under `vector` for `ttl`, dropping the oldest entries beyond the bound.
    pub fn insert(
        &self,
        partition: CacheKey,
        vector: &[f32],
        response: Arc<CachedResponse>,
        ttl: Duration,
    ) {
        let Some(vector) = normalized(vector) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.push_back(Entry {
            partition,
            vector,
            response,
            expires_at: Instant::now() + ttl,
        });
        while entries.len() as u64 > self.max_entries {
            entries.pop_front();
        }
    }

    /// Entries held (expired ones included until the next lookup).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalized(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = vector
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| {
        vector
            .iter()
            .map(|v| (f64::from(*v) / norm) as f32)
            .collect()
    })
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The text embedded for a request: each message as `role: text`, whitespace collapsed and lowercased, so
/// formatting alone never makes two prompts differ.
pub fn prompt_text(request: &ChatRequest) -> String {
    let mut text = String::new();
    for message in &request.messages {
        let role = serde_json::to_value(message.role)
            .ok()
            .and_then(|role| role.as_str().map(str::to_owned))
            .unwrap_or_default();
        text.push_str(&role);
        text.push(':');
        for part in crate::pii::message_texts(message) {
            for word in part.split_whitespace() {
                text.push(' ');
                text.extend(word.chars().flat_map(char::to_lowercase));
            }
        }
        text.push('\n');
    }
    text
}

/// Everything but the messages, for `tenant`: requests in one partition differ only in their prompt.
pub fn partition(
    route_id: &str,
    model: &str,
    tenant: Tenant<'_>,
    request: &ChatRequest,
) -> CacheKey {
    let without_messages = ChatRequest {
        messages: Vec::new(),
        ..request.clone()
    };
    CacheKey::chat(
        &format!("{PARTITION_PREFIX}{route_id}"),
        model,
        tenant,
        &without_messages,
    )
}

/// Embeds `text` through the gateway's route for `model`, with `key`'s region rules.
pub async fn embed(
    config: &RuntimeConfig,
    model: &str,
    key: &Key,
    text: String,
    metrics: &Metrics,
    request_id: &str,
) -> Result<Vec<f32>, &'static str> {
    let route = config.route(model).ok_or("no_embedding_route")?;
    let candidates =
        crate::app::candidates(route, key, None).map_err(|_| "no_embedding_backend")?;
    let request = EmbeddingsRequest {
        model: model.to_owned(),
        input: EmbeddingInput::Text(text),
        encoding_format: None,
        dimensions: None,
        user: None,
        extra: Default::default(),
    };
    let attempted = Dispatch {
        route,
        candidates: &candidates,
        deadline: Instant::now() + route.timeouts.total,
        request_id,
        metrics,
    }
    .embeddings(&request)
    .await;
    let outcome = attempted.result.map_err(|_| "embedding_failed")?;
    let body: Value = serde_json::from_slice(&outcome.body).map_err(|_| "embedding_invalid")?;
    let vector: Vec<f32> = body["data"][0]["embedding"]
        .as_array()
        .ok_or("embedding_invalid")?
        .iter()
        .map(|value| value.as_f64().map(|v| v as f32))
        .collect::<Option<_>>()
        .ok_or("embedding_invalid")?;
    if vector.is_empty() {
        return Err("embedding_invalid");
    }
    Ok(vector)
}

/// Adds the semantic layer to a request's cache use when its route has one: embeds the prompt, looks for
/// a close-enough answer (returned as a hit) and remembers the embedding so the answer is indexed when it
/// is stored. Failures only cost the lookup (counted in metrics).
#[expect(
    clippy::too_many_arguments,
    reason = "the request's context, passed explicitly rather than bundled for one call site"
)]
pub async fn attach(
    cache: &mut RequestCache,
    caches: &RouteCaches,
    config: &RuntimeConfig,
    route: &Route,
    key: &Key,
    request: &ChatRequest,
    metrics: &Metrics,
    request_id: &str,
) -> Option<Arc<CachedResponse>> {
    let (Some(policy), Some(semantic)) = (&route.config.cache, &route.config.semantic_cache) else {
        return None;
    };
    if !cache.writes() {
        return None;
    }
    let vector = match embed(
        config,
        &semantic.embedding_model,
        key,
        prompt_text(request),
        metrics,
        request_id,
    )
    .await
    {
        Ok(vector) => vector,
        Err(class) => {
            tracing::warn!(route = %route.id, class, "semantic cache: embedding the prompt failed");
            metrics.policy.record_semantic(&route.id, class);
            return None;
        }
    };
    let index = caches.semantic_for_route(&route.id, semantic.max_entries);
    let tenant = Tenant::for_scope(policy.scope, &key.id);
    let partition = partition(&route.id, &route.model, tenant, request);
    let hit = if cache.reads() {
        index.find(&partition, &vector, semantic.threshold)
    } else {
        None
    };
    metrics
        .policy
        .record_semantic(&route.id, if hit.is_some() { "hit" } else { "miss" });
    cache.attach_semantic(index, partition, vector);
    hit.map(|(response, _)| response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChatCompletion, Choice, FinishReason};

    fn entry(text: &str) -> Arc<CachedResponse> {
        let completion = ChatCompletion {
            id: text.to_owned(),
            choices: vec![Choice {
                finish_reason: Some(FinishReason::Stop),
                ..Choice::default()
            }],
            ..ChatCompletion::default()
        };
        Arc::new(CachedResponse::new(completion, "b").unwrap())
    }

    fn request(value: serde_json::Value) -> ChatRequest {
        serde_json::from_value(value).unwrap()
    }

    fn partition_of(byte: u8) -> CacheKey {
        let request = request(serde_json::json!({"model": "m", "messages": []}));
        CacheKey::chat(&format!("p{byte}"), "m", Tenant::Shared, &request)
    }

    #[tokio::test(start_paused = true)]
    async fn finds_the_closest_answer_above_the_threshold_within_its_partition_until_it_expires() {
        let index = SemanticIndex::new(10);
        let (mine, theirs) = (partition_of(1), partition_of(2));
        index.insert(mine, &[1.0, 0.0], entry("x-axis"), Duration::from_secs(60));
        index.insert(
            mine,
            &[0.6, 0.8],
            entry("diagonal"),
            Duration::from_secs(60),
        );
        let found = |vector: &[f32], threshold| {
            index
                .find(&mine, vector, threshold)
                .map(|(r, _)| r.completion.id.clone())
        };
        assert_eq!(
            found(&[2.0, 0.1], 0.95).as_deref(),
            Some("x-axis"),
            "scale does not matter"
        );
        assert_eq!(found(&[0.62, 0.78], 0.95).as_deref(), Some("diagonal"));
        assert_eq!(found(&[0.0, 1.0], 0.95), None, "below the threshold");
        assert_eq!(found(&[0.0, 1.0], 0.5).as_deref(), Some("diagonal"));
        assert!(
            index.find(&theirs, &[1.0, 0.0], 0.5).is_none(),
            "partitions never mix"
        );
        assert!(
            index.find(&mine, &[1.0, 0.0, 0.0], 0.5).is_none(),
            "other dimensions"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(found(&[1.0, 0.0], 0.5), None, "expired");
        assert!(index.is_empty());
    }

    #[test]
    fn the_index_is_bounded_and_drops_the_oldest() {
        let index = SemanticIndex::new(2);
        let partition = partition_of(1);
        for (i, vector) in [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]].iter().enumerate() {
            index.insert(
                partition,
                vector,
                entry(&i.to_string()),
                Duration::from_secs(60),
            );
        }
        assert_eq!(index.len(), 2);
        assert!(
            index.find(&partition, &[1.0, 0.0], 0.99).is_none(),
            "the oldest went"
        );
        assert!(index.find(&partition, &[-1.0, 0.0], 0.99).is_some());
        index.insert(
            partition,
            &[0.0, 0.0],
            entry("zero"),
            Duration::from_secs(60),
        );
        assert_eq!(index.len(), 2, "a zero vector is not indexed");
    }

    #[test]
    fn prompts_differing_only_in_formatting_embed_the_same_text_and_partitions_ignore_messages() {
        let a = request(serde_json::json!({"model": "m", "temperature": 0.2,
            "messages": [{"role": "user", "content": "What is  a Sluice?"}]}));
        let b = request(serde_json::json!({"model": "m", "temperature": 0.2,
            "messages": [{"role": "user", "content": "what is a sluice?\n"}]}));
        assert_eq!(prompt_text(&a), prompt_text(&b));
        assert_eq!(prompt_text(&a), "user: what is a sluice?\n");
        let other = request(serde_json::json!({"model": "m", "temperature": 0.9,
            "messages": [{"role": "user", "content": "What is  a Sluice?"}]}));
        let key = |request: &ChatRequest, tenant| partition("ns/r", "m", tenant, request);
        assert_eq!(key(&a, Tenant::Key("ns/k")), key(&b, Tenant::Key("ns/k")));
        assert_ne!(
            key(&a, Tenant::Key("ns/k")),
            key(&a, Tenant::Key("ns/other"))
        );
        assert_ne!(
            key(&a, Tenant::Key("ns/k")),
            key(&other, Tenant::Key("ns/k"))
        );
        assert_ne!(
            key(&a, Tenant::Shared),
            CacheKey::chat(
                "ns/r",
                "m",
                Tenant::Shared,
                &ChatRequest {
                    messages: Vec::new(),
                    ..a.clone()
                }
            ),
            "never an exact-match key"
        );
    }
}
