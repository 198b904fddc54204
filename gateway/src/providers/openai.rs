//! OpenAI Chat Completions and Embeddings upstream, plus the body, response, error and stream handling that
//! Azure OpenAI and OpenAI-compatible servers share with it.

use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::error::{kind_for_status, retry_after_from_headers};
use super::sse::SseEvent;
use super::{
    Auth, BackendTarget, EmbeddingsOutcome, Progress, StreamItem, TranslateError, UpstreamError,
    UpstreamErrorKind, UpstreamRequest, json_post,
};
use crate::api::json::JsonMap;
use crate::api::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, EmbeddingsRequest, EmbeddingsUsage,
};

/// `POST {endpoint}/chat/completions` with `Authorization: Bearer`.
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = encode_chat_body(
        request,
        &BodyShape {
            model: Some(&target.model),
            legacy_max_tokens: false,
        },
    )?;
    json_post(
        target,
        target.url("/chat/completions"),
        Auth::Bearer(Some(target.require_key()?)),
        &[],
        body,
    )
}

/// `POST {endpoint}/embeddings` with `Authorization: Bearer`.
pub fn build_embeddings_request(
    target: &BackendTarget,
    request: &EmbeddingsRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = encode_embeddings_body(request, Some(&target.model))?;
    json_post(
        target,
        target.url("/embeddings"),
        Auth::Bearer(Some(target.require_key()?)),
        &[],
        body,
    )
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// What differs between the OpenAI-family request bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyShape<'a> {
    /// `model` to send; `None` omits it (Azure classic URLs name the deployment).
    pub model: Option<&'a str>,
    /// Send the output bound as legacy `max_tokens`, which every OpenAI-compatible server understands.
    pub legacy_max_tokens: bool,
}

/// Serializes the request as-is except for `model`, the output bound, and `stream_options.include_usage`
/// (always requested upstream so the gateway can meter streams). Unknown fields pass through.
pub(crate) fn encode_chat_body(
    request: &ChatRequest,
    shape: &BodyShape<'_>,
) -> Result<Vec<u8>, TranslateError> {
    let mut body = Vec::with_capacity(512);
    OutboundChat { request, shape }.serialize(&mut serde_json::Serializer::new(&mut body))?;
    Ok(body)
}

struct OutboundChat<'a> {
    request: &'a ChatRequest,
    shape: &'a BodyShape<'a>,
}

fn entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(value) => map.serialize_entry(key, value),
        None => Ok(()),
    }
}

impl Serialize for OutboundChat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let request = self.request;
        let mut map = serializer.serialize_map(None)?;
        entry(&mut map, "model", &self.shape.model)?;
        map.serialize_entry("messages", &request.messages)?;
        entry(&mut map, "stream", &request.stream)?;
        if request.is_stream() {
            map.serialize_entry(
                "stream_options",
                &UsageStreamOptions {
                    extra: request
                        .stream_options
                        .as_ref()
                        .map(|options| &options.extra),
                },
            )?;
        }
        if self.shape.legacy_max_tokens {
            entry(&mut map, "max_tokens", &request.max_output_tokens())?;
        } else {
            entry(&mut map, "max_tokens", &request.max_tokens)?;
            entry(
                &mut map,
                "max_completion_tokens",
                &request.max_completion_tokens,
            )?;
        }
        entry(&mut map, "temperature", &request.temperature)?;
        entry(&mut map, "top_p", &request.top_p)?;
        entry(&mut map, "n", &request.n)?;
        entry(&mut map, "stop", &request.stop)?;
        entry(&mut map, "seed", &request.seed)?;
        entry(&mut map, "presence_penalty", &request.presence_penalty)?;
        entry(&mut map, "frequency_penalty", &request.frequency_penalty)?;
        entry(&mut map, "tools", &request.tools)?;
        entry(&mut map, "tool_choice", &request.tool_choice)?;
        entry(
            &mut map,
            "parallel_tool_calls",
            &request.parallel_tool_calls,
        )?;
        entry(&mut map, "response_format", &request.response_format)?;
        entry(&mut map, "user", &request.user)?;
        for (key, value) in &request.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The client's `stream_options` with `include_usage` forced on.
struct UsageStreamOptions<'a> {
    extra: Option<&'a JsonMap>,
}

impl Serialize for UsageStreamOptions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("include_usage", &true)?;
        for (key, value) in self.extra.into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The embeddings request with `model` replaced (or omitted for Azure classic URLs).
pub(crate) fn encode_embeddings_body(
    request: &EmbeddingsRequest,
    model: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    struct Outbound<'a> {
        request: &'a EmbeddingsRequest,
        model: Option<&'a str>,
    }

    impl Serialize for Outbound<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let request = self.request;
            let mut map = serializer.serialize_map(None)?;
            entry(&mut map, "model", &self.model)?;
            map.serialize_entry("input", &request.input)?;
            entry(&mut map, "encoding_format", &request.encoding_format)?;
            entry(&mut map, "dimensions", &request.dimensions)?;
            entry(&mut map, "user", &request.user)?;
            for (key, value) in &request.extra {
                map.serialize_entry(key, value)?;
            }
            map.end()
        }
    }

    Ok(serde_json::to_vec(&Outbound { request, model })?)
}

// ---------------------------------------------------------------------------
// Responses and errors
// ---------------------------------------------------------------------------

/// Parses a 2xx chat completion; an error envelope inside a 2xx is classified like an error response.
pub(crate) fn parse_chat_response(body: &[u8]) -> Result<ChatCompletion, UpstreamError> {
    match serde_json::from_slice::<ChatCompletion>(body) {
        Ok(completion) => Ok(completion),
        Err(error) => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) if is_error_object(&object) => {
                Err(error_from_object(200, &object))
            }
            _ => Err(UpstreamError::protocol(
                200,
                format!("invalid chat completion body: {error}"),
            )),
        },
    }
}

/// Classifies a non-2xx response. Understands OpenAI's and Azure's envelopes and the looser shapes of
/// OpenAI-compatible servers (vLLM `{"object":"error",…}`, FastAPI `{"detail":…}`, plain text).
pub(crate) fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let error = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => error_from_object(status, &object),
        _ => UpstreamError::new(
            kind_for_status(status),
            status,
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    error.with_retry_after(retry_after_from_headers(headers))
}

fn is_error_object(object: &JsonMap) -> bool {
    object.get("error").is_some_and(|error| !error.is_null())
        || object.get("object").and_then(Value::as_str) == Some("error")
}

/// A string field that providers send as a string, a number or null (Azure's `"code": "429"`, vLLM's `400`).
fn loose_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn error_from_object(status: u16, object: &JsonMap) -> UpstreamError {
    let detail = match object.get("error") {
        Some(Value::Object(inner)) => inner,
        _ => object,
    };
    let message = loose_string(detail.get("message"))
        .or_else(|| match object.get("error") {
            Some(Value::String(text)) => Some(text.clone()),
            _ => None,
        })
        .or_else(|| loose_string(object.get("detail")))
        .unwrap_or_default();
    let code = loose_string(detail.get("code"));
    let kind_name = loose_string(detail.get("type"));
    let kind = classify(status, code.as_deref(), kind_name.as_deref(), &message);
    UpstreamError::new(kind, status, message).with_code(code.or(kind_name))
}

/// OpenAI/Azure codes first, then message hints that OpenAI-compatible servers give, then the status.
fn classify(
    status: u16,
    code: Option<&str>,
    kind: Option<&str>,
    message: &str,
) -> UpstreamErrorKind {
    let by_code = |value: &str| match value {
        "context_length_exceeded" | "string_above_max_length" => {
            Some(UpstreamErrorKind::ContextLengthExceeded)
        }
        "insufficient_quota" => Some(UpstreamErrorKind::QuotaExceeded),
        "content_filter" | "content_policy_violation" => Some(UpstreamErrorKind::ContentFilter),
        "model_not_found" | "DeploymentNotFound" => Some(UpstreamErrorKind::NotFound),
        "invalid_api_key" | "401" => Some(UpstreamErrorKind::Auth),
        "rate_limit_exceeded" | "429" => Some(UpstreamErrorKind::RateLimited),
        "server_error" => Some(UpstreamErrorKind::Server),
        _ => None,
    };
    if let Some(kind) = code.and_then(by_code).or_else(|| kind.and_then(by_code)) {
        return kind;
    }
    let lower = message.to_ascii_lowercase();
    if lower.contains("maximum context length") || lower.contains("context window") {
        return UpstreamErrorKind::ContextLengthExceeded;
    }
    if status == 200 {
        // An error event inside a stream has no status of its own; its code may still be an HTTP status.
        return code
            .and_then(|code| code.parse::<u16>().ok())
            .map_or(UpstreamErrorKind::Server, kind_for_status);
    }
    kind_for_status(status)
}

/// Reads only `usage` from an OpenAI embeddings body; the body itself goes to the client unchanged.
pub(crate) fn parse_embeddings_response(body: Bytes) -> Result<EmbeddingsOutcome, UpstreamError> {
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(rename = "data")]
        _data: IgnoredAny,
        #[serde(default)]
        usage: EmbeddingsUsage,
    }
    match serde_json::from_slice::<UsageOnly>(&body) {
        Ok(parsed) => Ok(EmbeddingsOutcome {
            usage: parsed.usage,
            body,
        }),
        Err(error) => Err(UpstreamError::protocol(
            200,
            format!("invalid embeddings body: {error}"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// Decodes `data:` chunks, `data: [DONE]`, and `data: {"error":…}` events.
#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    saw_finish: bool,
}

impl StreamDecoder {
    pub(crate) fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<StreamItem>) -> Progress {
        let data = event.data.trim();
        if data.is_empty() {
            return Progress::Continue;
        }
        if data == "[DONE]" {
            return Progress::Complete;
        }
        // Cheap pre-check: only bodies mentioning "error" can be error events.
        if memchr::memmem::find(data.as_bytes(), b"error").is_some()
            && let Ok(Value::Object(object)) = serde_json::from_str::<Value>(data)
            && is_error_object(&object)
        {
            out.push(StreamItem::Error(error_from_object(200, &object)));
            return Progress::Failed;
        }
        match serde_json::from_str::<ChatCompletionChunk>(data) {
            Ok(chunk) => {
                // Azure's prompt-filter chunk (and keep-alive chunks) carry neither choices nor usage.
                if chunk.choices.is_empty() && chunk.usage.is_none() {
                    return Progress::Continue;
                }
                if chunk
                    .choices
                    .iter()
                    .any(|choice| choice.finish_reason.is_some())
                {
                    self.saw_finish = true;
                }
                out.push(StreamItem::Chunk(chunk));
                Progress::Continue
            }
            Err(error) => {
                out.push(StreamItem::Error(UpstreamError::protocol(
                    200,
                    format!("invalid stream chunk: {error}"),
                )));
                Progress::Failed
            }
        }
    }

    /// A stream that reached a finish reason but not `[DONE]` is accepted; one cut earlier is an error.
    pub(crate) fn on_eof(&mut self, out: &mut Vec<StreamItem>) -> Progress {
        if self.saw_finish {
            Progress::Complete
        } else {
            out.push(StreamItem::Error(UpstreamError::protocol(
                200,
                "stream ended before a finish reason",
            )));
            Progress::Failed
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::openai::{FinishReason, Role};
    use crate::providers::{ApiKey, ProviderKind, StreamTranslator, parse_error_response};
    use http::HeaderValue;
    use pretty_assertions::assert_eq;

    pub(crate) const REQUEST: &str = r#"{
      "model": "my-alias",
      "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}
      ],
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
      "stream": true, "stream_options": {"include_obfuscation": false},
      "max_completion_tokens": 100, "logprobs": true
    }"#;

    fn target() -> BackendTarget {
        BackendTarget::new(ProviderKind::OpenAi, "https://api.openai.com/v1/", "gpt-4o")
            .with_api_key(ApiKey::new("sk-test"))
    }

    #[test]
    fn request_keeps_fields_and_forces_usage() {
        let request: ChatRequest = serde_json::from_str(REQUEST).unwrap();
        let upstream = build_chat_request(&target(), &request).unwrap();
        assert_eq!(upstream.uri(), "https://api.openai.com/v1/chat/completions");
        let auth = &upstream.headers()["authorization"];
        assert_eq!(auth, "Bearer sk-test");
        assert!(auth.is_sensitive());
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        let mut expected: Value = serde_json::from_str(REQUEST).unwrap();
        expected["model"] = "gpt-4o".into();
        expected["messages"][1]
            .as_object_mut()
            .unwrap()
            .remove("content");
        expected["stream_options"] =
            serde_json::json!({"include_usage": true, "include_obfuscation": false});
        assert_eq!(body, expected);
    }

    #[test]
    fn non_streaming_requests_carry_no_stream_options() {
        let request: ChatRequest = serde_json::from_str(
            r#"{"model":"a","messages":[{"role":"user","content":"hi"}],"stream":false,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        let upstream = build_chat_request(&target(), &request).unwrap();
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn missing_key_is_a_target_error() {
        let mut target = target();
        target.api_key = None;
        let request: ChatRequest = serde_json::from_str(REQUEST).unwrap();
        let error = build_chat_request(&target, &request).unwrap_err();
        assert_eq!(error.status(), 500);
    }

    #[test]
    fn errors_are_classified() {
        let cases: &[(u16, &str, UpstreamErrorKind)] = &[
            (
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                UpstreamErrorKind::RateLimited,
            ),
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                UpstreamErrorKind::QuotaExceeded,
            ),
            (
                400,
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                UpstreamErrorKind::ContextLengthExceeded,
            ),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                UpstreamErrorKind::Auth,
            ),
            (
                404,
                r#"{"error":{"message":"The model does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
                UpstreamErrorKind::NotFound,
            ),
            (
                500,
                r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#,
                UpstreamErrorKind::Server,
            ),
            (
                503,
                "<html>Service Unavailable</html>",
                UpstreamErrorKind::Overloaded,
            ),
            // Azure shapes.
            (
                400,
                r#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400}}"#,
                UpstreamErrorKind::ContentFilter,
            ),
            (
                401,
                r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}"#,
                UpstreamErrorKind::Auth,
            ),
            (
                404,
                r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
                UpstreamErrorKind::NotFound,
            ),
            // vLLM and FastAPI shapes.
            (
                400,
                r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","param":null,"code":400}"#,
                UpstreamErrorKind::ContextLengthExceeded,
            ),
            (
                422,
                r#"{"detail":"field required"}"#,
                UpstreamErrorKind::BadRequest,
            ),
        ];
        for (status, body, expected) in cases {
            for provider in [
                ProviderKind::OpenAi,
                ProviderKind::AzureOpenAi,
                ProviderKind::OpenAiCompatible,
            ] {
                let error =
                    parse_error_response(provider, *status, &HeaderMap::new(), body.as_bytes());
                assert_eq!(error.kind, *expected, "{provider} {status} {body}");
                assert_eq!(error.status, *status);
            }
        }
    }

    #[test]
    fn retry_after_headers_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("644"));
        let error = parse_error(
            429,
            &headers,
            br#"{"error":{"message":"x","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(
            error.retry_after,
            Some(std::time::Duration::from_millis(644))
        );
        assert_eq!(error.provider_code.as_deref(), Some("rate_limit_exceeded"));
        assert!(error.is_retryable());
    }

    #[test]
    fn error_envelope_inside_a_200_is_an_error() {
        let error = parse_chat_response(
            br#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#,
        )
        .unwrap_err();
        assert_eq!(error.kind, UpstreamErrorKind::Server);
        let error = parse_chat_response(b"not json").unwrap_err();
        assert_eq!(error.kind, UpstreamErrorKind::Protocol);
    }

    pub(crate) const STREAM: &str = concat!(
        "data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me check \u{e9}\u{1f600}.\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Rome\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":82,\"completion_tokens\":17,\"total_tokens\":99,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\n\n",
        "data: [DONE]\n\n",
    );

    pub(crate) fn run(
        provider: ProviderKind,
        chunks: &[&[u8]],
    ) -> (Vec<StreamItem>, StreamTranslator) {
        let mut translator = StreamTranslator::new(provider, 1_700_000_000);
        let mut out = Vec::new();
        for chunk in chunks {
            translator.feed(chunk, &mut out);
        }
        translator.finish(&mut out);
        (out, translator)
    }

    #[test]
    fn stream_is_decoded_identically_at_every_split() {
        let bytes = STREAM.as_bytes();
        let (reference, translator) = run(ProviderKind::AzureOpenAi, &[bytes]);
        assert!(translator.is_complete());
        assert_eq!(translator.usage().unwrap().cached_tokens(), 64);
        // Azure's empty prompt-filter chunk is skipped.
        assert_eq!(reference.len(), 7);
        let StreamItem::Chunk(first) = &reference[0] else {
            panic!("chunk expected")
        };
        assert_eq!(first.choices[0].delta.role, Some(Role::Assistant));
        let StreamItem::Chunk(finish) = &reference[5] else {
            panic!("chunk expected")
        };
        assert_eq!(
            finish.choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        for split in 1..bytes.len() {
            let (items, _) = run(ProviderKind::OpenAi, &[&bytes[..split], &bytes[split..]]);
            assert_eq!(items, reference, "split at {split}");
        }
    }

    #[test]
    fn error_events_inside_a_200_stream_are_surfaced() {
        let first = "data: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\",\"code\":\"server_error\"}}\n\n";
        let (items, translator) = run(ProviderKind::OpenAi, &[first.as_bytes()]);
        assert!(translator.is_failed());
        assert!(
            matches!(&items[..], [StreamItem::Error(error)] if error.kind == UpstreamErrorKind::Server && error.status == 200)
        );

        let later = format!("{}{}", &STREAM[..STREAM.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\"").unwrap()], "data: {\"error\":{\"message\":\"Rate limit\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\ndata: [DONE]\n\n");
        let (items, _) = run(ProviderKind::OpenAi, &[later.as_bytes()]);
        let StreamItem::Error(error) = items.last().unwrap() else {
            panic!("error expected")
        };
        assert_eq!(error.kind, UpstreamErrorKind::RateLimited);
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn cut_streams_are_errors() {
        let cut = &STREAM[..STREAM.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\"").unwrap()];
        let (items, translator) = run(ProviderKind::OpenAi, &[cut.as_bytes()]);
        assert!(translator.is_failed());
        assert!(
            matches!(items.last(), Some(StreamItem::Error(error)) if error.kind == UpstreamErrorKind::Protocol)
        );
    }

    #[test]
    fn embeddings_pass_through_with_usage() {
        let body = Bytes::from_static(br#"{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,"embedding":[0.01,-0.02]}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#);
        let outcome = parse_embeddings_response(body.clone()).unwrap();
        assert_eq!(outcome.body, body);
        assert_eq!(outcome.usage.prompt_tokens, 2);
        let request: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"alias","input":["a","b"],"dimensions":256}"#)
                .unwrap();
        let upstream = build_embeddings_request(&target(), &request).unwrap();
        assert_eq!(upstream.uri(), "https://api.openai.com/v1/embeddings");
        let sent: Value = serde_json::from_slice(upstream.body()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"model":"gpt-4o","input":["a","b"],"dimensions":256})
        );
    }
}
