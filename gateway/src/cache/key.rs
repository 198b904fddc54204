//! The cache key: SHA-256 over a canonical encoding of everything that changes a response, plus the tenant.
//!
//! The encoding is the JSON of a fixed struct whose field order never changes; free-form objects (schemas,
//! extra fields) are `serde_json::Map`s, which are sorted by key because the workspace does not enable
//! serde_json's `preserve_order` (a test below fails if that ever changes). JSON is unambiguous, so two
//! different inputs never share an encoding.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_crds::v1alpha1::CacheScope;

use crate::api::openai::{ChatMessage, ChatRequest, ResponseFormat, Stop, Tool, ToolChoice};

/// Version of the key encoding; bump it when the encoding changes so old entries are never read.
const KEY_VERSION: u32 = 1;

/// Request fields outside the typed ones that do not change the output: tracing and storage metadata and
/// provider-side prompt caching hints. Everything else in `extra` (`logprobs`, `logit_bias`, `top_k`,
/// `reasoning_effort`, …) is part of the key.
const OUTPUT_NEUTRAL_EXTRA: &[&str] = &[
    "metadata",
    "store",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
];

/// Who may share an entry, resolved from the route's scope and the caller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant<'a> {
    /// Only this virtual key (`namespace/name`).
    Key(&'a str),
    /// Keys of this namespace.
    Namespace(&'a str),
    /// Everyone who may call the route.
    Shared,
}

impl<'a> Tenant<'a> {
    /// The tenant of a caller holding `key_id` (`namespace/name`, as in `KeyConfig::id`) under `scope`.
    pub fn for_scope(scope: CacheScope, key_id: &'a str) -> Self {
        match scope {
            CacheScope::Key => Tenant::Key(key_id),
            CacheScope::Namespace => Tenant::Namespace(
                key_id
                    .split_once('/')
                    .map_or(key_id, |(namespace, _)| namespace),
            ),
            CacheScope::Shared => Tenant::Shared,
        }
    }
}

/// A cache key: 32 bytes of SHA-256. Shown as hex; it reveals nothing about the request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of a chat request on `route_id`, asking `model` upstream, for `tenant`.
    ///
    /// Compute it on the request as the upstream will see it: after route defaults, overrides and the
    /// system prompt prefix, and after PII redaction. `model` is the model the answer comes from; pass the
    /// route's canonical model (not the alias the client used) so aliases share entries.
    ///
    /// Ignored because they do not change the output: `user`, `stream`, `stream_options` (a streamed and a
    /// non-streamed request share an entry), the request's own `model` string, and
    /// [`OUTPUT_NEUTRAL_EXTRA`]. `max_tokens` and `max_completion_tokens` count as the one output bound.
    pub fn chat(route_id: &str, model: &str, tenant: Tenant<'_>, request: &ChatRequest) -> Self {
        let (scope, tenant_id) = match tenant {
            Tenant::Key(id) => ("key", id),
            Tenant::Namespace(namespace) => ("namespace", namespace),
            Tenant::Shared => ("shared", ""),
        };
        let extra: BTreeMap<&str, &Value> = request
            .extra
            .iter()
            .filter(|(name, _)| !OUTPUT_NEUTRAL_EXTRA.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value))
            .collect();
        let material = ChatKeyMaterial {
            version: KEY_VERSION,
            route: route_id,
            model,
            scope,
            tenant: tenant_id,
            messages: &request.messages,
            tools: request.tools.as_deref(),
            tool_choice: request.tool_choice.as_ref(),
            parallel_tool_calls: request.parallel_tool_calls,
            response_format: request.response_format.as_ref(),
            temperature: request.temperature,
            top_p: request.top_p,
            max_output_tokens: request.max_output_tokens(),
            n: request.n,
            stop: request.stop.as_ref(),
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            extra,
        };
        let mut hasher = HashWriter(Sha256::new());
        // Writing plain data into a hasher cannot fail: the writer never errors and every map key is a string.
        let _ = serde_json::to_writer(&mut hasher, &material);
        Self(hasher.0.finalize().into())
    }

    /// Lowercase hex, as used in Redis keys.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// Everything that determines a chat response, in a fixed order.
#[derive(Serialize)]
struct ChatKeyMaterial<'a> {
    version: u32,
    route: &'a str,
    model: &'a str,
    scope: &'a str,
    tenant: &'a str,
    messages: &'a [ChatMessage],
    tools: Option<&'a [Tool]>,
    tool_choice: Option<&'a ToolChoice>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<&'a ResponseFormat>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u32>,
    n: Option<u32>,
    stop: Option<&'a Stop>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    extra: BTreeMap<&'a str, &'a Value>,
}

/// Feeds serialized bytes straight into the hash, so computing a key allocates nothing for the encoding.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROUTE: &str = "team-a/chat";
    const MODEL: &str = "gpt-4o";

    fn base() -> Value {
        json!({
            "model": "chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is Rust?"}
            ],
            "temperature": 0.2,
            "max_tokens": 100,
            "tools": [
                {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "required": ["x"]}}}
        })
    }

    fn key_of(body: &Value, scope: CacheScope, key_id: &str) -> CacheKey {
        let request: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        CacheKey::chat(ROUTE, MODEL, Tenant::for_scope(scope, key_id), &request)
    }

    fn with(edit: impl FnOnce(&mut Value)) -> Value {
        let mut body = base();
        edit(&mut body);
        body
    }

    /// What must and must not collide. Each row: a description, the scope, the other caller's key id, the
    /// other request, and whether it must hit the entry stored for `base()` by `team-a/alice`.
    #[test]
    fn hit_and_miss_table() {
        let rows: Vec<(&str, CacheScope, &str, Value, bool)> = vec![
            (
                "same request, same key",
                CacheScope::Key,
                "team-a/alice",
                base(),
                true,
            ),
            (
                "same request, other key, key scope",
                CacheScope::Key,
                "team-a/bob",
                base(),
                false,
            ),
            (
                "same request, other key in the namespace, namespace scope",
                CacheScope::Namespace,
                "team-a/bob",
                base(),
                true,
            ),
            (
                "same request, other namespace, namespace scope",
                CacheScope::Namespace,
                "team-b/alice",
                base(),
                false,
            ),
            (
                "same request, other namespace, shared scope",
                CacheScope::Shared,
                "team-b/carol",
                base(),
                true,
            ),
            (
                "different temperature",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["temperature"] = json!(0.3)),
                false,
            ),
            (
                "temperature removed",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b.as_object_mut().unwrap().remove("temperature");
                }),
                false,
            ),
            (
                "different max_tokens",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["max_tokens"] = json!(101)),
                false,
            ),
            (
                "max_completion_tokens with the same bound",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b.as_object_mut().unwrap().remove("max_tokens");
                    b["max_completion_tokens"] = json!(100);
                }),
                true,
            ),
            (
                "different user",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["user"] = json!("someone-else")),
                true,
            ),
            (
                "streamed with usage",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["stream"] = json!(true);
                    b["stream_options"] = json!({"include_usage": true});
                }),
                true,
            ),
            (
                "metadata and store",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["metadata"] = json!({"trace": "x"});
                    b["store"] = json!(true);
                }),
                true,
            ),
            (
                "client used an alias",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["model"] = json!("chat-alias")),
                true,
            ),
            (
                "tools reordered",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["tools"].as_array_mut().unwrap().reverse();
                }),
                false,
            ),
            (
                "schema keys reordered",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["tools"][0]["function"]["parameters"] = serde_json::from_str(
                        r#"{"properties": {"q": {"type": "string"}}, "type": "object"}"#,
                    )
                    .unwrap();
                }),
                true,
            ),
            (
                "tool_choice set",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["tool_choice"] = json!("required")),
                false,
            ),
            (
                "response_format changed",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["response_format"] = json!({"type": "json_object"})),
                false,
            ),
            (
                "different stop",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["stop"] = json!(["END"])),
                false,
            ),
            (
                "seed set",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["seed"] = json!(7)),
                false,
            ),
            (
                "n = 2",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["n"] = json!(2)),
                false,
            ),
            (
                "presence penalty",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["presence_penalty"] = json!(0.5)),
                false,
            ),
            (
                "frequency penalty",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["frequency_penalty"] = json!(0.5)),
                false,
            ),
            (
                "logit bias",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["logit_bias"] = json!({"50256": -100})),
                false,
            ),
            (
                "vendor top_k",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["top_k"] = json!(5)),
                false,
            ),
            (
                "one more message",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["messages"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"role": "user", "content": "And Go?"}));
                }),
                false,
            ),
            (
                "same text as a text part",
                CacheScope::Key,
                "team-a/alice",
                with(|b| {
                    b["messages"][1]["content"] =
                        json!([{"type": "text", "text": "What is Rust?"}]);
                }),
                false,
            ),
            (
                "different role",
                CacheScope::Key,
                "team-a/alice",
                with(|b| b["messages"][0]["role"] = json!("developer")),
                false,
            ),
        ];
        let stored = key_of(&base(), CacheScope::Key, "team-a/alice");
        for (description, scope, key_id, body, must_hit) in rows {
            // The entry was stored under the row's scope by alice.
            let stored = if scope == CacheScope::Key {
                stored
            } else {
                key_of(&base(), scope, "team-a/alice")
            };
            let looked_up = key_of(&body, scope, key_id);
            assert_eq!(looked_up == stored, must_hit, "{description}");
        }
    }

    #[test]
    fn route_and_model_are_part_of_the_key() {
        let request: ChatRequest = serde_json::from_value(base()).unwrap();
        let tenant = Tenant::Key("team-a/alice");
        let key = CacheKey::chat(ROUTE, MODEL, tenant, &request);
        assert_ne!(key, CacheKey::chat("team-a/other", MODEL, tenant, &request));
        assert_ne!(key, CacheKey::chat(ROUTE, "gpt-4o-mini", tenant, &request));
        assert_eq!(
            key,
            CacheKey::chat(ROUTE, MODEL, tenant, &request),
            "deterministic"
        );
    }

    #[test]
    fn tenants_never_collide_through_the_scope_tag() {
        let request: ChatRequest = serde_json::from_value(base()).unwrap();
        let by_key = CacheKey::chat(ROUTE, MODEL, Tenant::Key("team-a"), &request);
        let by_namespace = CacheKey::chat(ROUTE, MODEL, Tenant::Namespace("team-a"), &request);
        assert_ne!(by_key, by_namespace);
        assert_eq!(format!("{by_key:?}").len(), "CacheKey()".len() + 64);
    }
}
