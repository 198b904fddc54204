//! Gemini (Generative Language API v1beta) on the wire: `candidates`/`parts`, running `usageMetadata`,
//! `google.rpc.Status` error bodies, SSE with CRLF line ends or a streamed JSON array.

use http::HeaderMap;
use http::header::HeaderValue;
use serde_json::{Value, json};

use super::{
    Answer, Ctx, ErrorResponse, Event, Failure, Framing, retry_after_header, retry_seconds,
};
use crate::mock::config::DEFAULT_EMBEDDING_DIMENSIONS;
use crate::mock::embed;
use crate::mock::reply::{Finish, Prompt, PromptBuilder, Reply, Usage, count_words, push_strings};
use crate::mock::route::{Endpoint, Route};

/// Gemini's input limit, used in the "context length exceeded" message.
const INPUT_TOKEN_LIMIT: u64 = 1_048_576;

pub(crate) fn read_prompt(route: &Route, body: &Value) -> Prompt {
    // countTokens may wrap a whole generate request.
    let body = if body["generateContentRequest"].is_object() {
        &body["generateContentRequest"]
    } else {
        body
    };
    let mut prompt = PromptBuilder::default();
    for part in body["systemInstruction"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        prompt.count(part["text"].as_str().unwrap_or_default());
    }
    let mut in_user_turn = false;
    for content in body["contents"].as_array().into_iter().flatten() {
        let user = content["role"].as_str().is_none_or(|role| role == "user");
        if user && !in_user_turn {
            prompt.start_user_turn();
        }
        in_user_turn = user;
        for text in part_texts(content) {
            if user {
                prompt.user_text(&text);
            } else {
                prompt.count(&text);
            }
        }
    }
    let max_tokens = body["generationConfig"]["maxOutputTokens"].as_u64();
    prompt.finish(max_tokens, route.path_model.clone())
}

/// Text parts and the strings inside function responses.
fn part_texts(content: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for part in content["parts"].as_array().into_iter().flatten() {
        if let Some(text) = part["text"].as_str() {
            texts.push(text.to_owned());
        } else if part["functionResponse"].is_object() {
            push_strings(&part["functionResponse"]["response"], &mut texts);
        }
    }
    texts
}

fn error(status: u16, name: &str, message: &str, details: Vec<Value>) -> ErrorResponse {
    let mut error = json!({"code": status, "message": message, "status": name});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    ErrorResponse::json(status, &json!({"error": error}))
}

fn invalid(message: &str) -> ErrorResponse {
    error(400, "INVALID_ARGUMENT", message, Vec::new())
}

pub(crate) fn validate(ctx: &Ctx, body: &Value) -> Result<(), ErrorResponse> {
    if ctx.route.endpoint == Endpoint::Models {
        return Ok(());
    }
    if !body.is_object() {
        return Err(invalid("Invalid JSON payload received. Unexpected token."));
    }
    match ctx.route.endpoint {
        Endpoint::GenerateContent | Endpoint::StreamGenerateContent => validate_contents(body),
        Endpoint::EmbedContent if !body["content"].is_object() => Err(invalid(
            "* EmbedContentRequest.content: content is not specified\n",
        )),
        Endpoint::BatchEmbedContents if body["requests"].as_array().is_none_or(Vec::is_empty) => {
            Err(invalid(
                "* BatchEmbedContentsRequest.requests: requests is not specified\n",
            ))
        }
        _ => Ok(()),
    }
}

fn validate_contents(body: &Value) -> Result<(), ErrorResponse> {
    let contents = body["contents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if contents.is_empty() {
        return Err(invalid(
            "* GenerateContentRequest.contents: contents is not specified\n",
        ));
    }
    let mut previous: Option<&str> = None;
    for (index, content) in contents.iter().enumerate() {
        let role = content["role"].as_str().unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(invalid("Please use a valid role: user, model."));
        }
        if previous == Some(role) {
            return Err(invalid(
                "Please ensure that multiturn requests alternate between user and model.",
            ));
        }
        previous = Some(role);
        for (position, part) in content["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let response = &part["functionResponse"]["response"];
            if part["functionResponse"].is_object() && !response.is_object() {
                return Err(invalid(&format!(
                    "Invalid value at 'contents[{index}].parts[{position}].function_response.response' \
                     (type.googleapis.com/google.protobuf.Struct), {response}"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn failure(ctx: &Ctx, failure: &Failure) -> ErrorResponse {
    match failure {
        Failure::MissingKey => error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or \
             other form of API consumer identity to call this API.",
            Vec::new(),
        ),
        // Gemini answers a wrong key with 400, not 401.
        Failure::InvalidKey { .. } => error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            vec![
                json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                       "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}),
                json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                       "message": "API key not valid. Please pass a valid API key."}),
            ],
        ),
        Failure::RateLimited(hint) => rate_limited(*hint),
        Failure::Status(429) => rate_limited(None),
        Failure::ContextLength { prompt_tokens } => invalid(&format!(
            "The input token count ({}) exceeds the maximum number of tokens allowed ({INPUT_TOKEN_LIMIT}).",
            INPUT_TOKEN_LIMIT + prompt_tokens
        )),
        Failure::Status(status) => status_error(ctx, *status),
    }
}

fn rate_limited(hint: Option<crate::mock::RetryAfter>) -> ErrorResponse {
    let mut details = vec![json!({
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]})];
    if let Some(seconds) = retry_seconds(hint) {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{seconds}s")}));
    }
    let response = error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more information on this \
         error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        details,
    );
    retry_after_header(response, hint)
}

fn status_error(ctx: &Ctx, status: u16) -> ErrorResponse {
    let (name, message) = match status {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument.".to_owned()),
        401 => (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid \
             authentication credential."
                .to_owned(),
        ),
        403 => ("PERMISSION_DENIED", "The caller does not have permission".to_owned()),
        404 => (
            "NOT_FOUND",
            format!(
                "models/{} is not found for API version v1beta, or is not supported for generateContent. Call \
                 ListModels to see the list of available models and their supported methods.",
                ctx.model
            ),
        ),
        500 => (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
                .to_owned(),
        ),
        502 => return ErrorResponse::proxy_html(status),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later.".to_owned()),
        504 => ("DEADLINE_EXCEEDED", "The request timed out. Please try again.".to_owned()),
        status if status >= 500 => ("UNKNOWN", "An unknown error occurred.".to_owned()),
        _ => ("FAILED_PRECONDITION", "Precondition check failed.".to_owned()),
    };
    error(status, name, &message, Vec::new())
}

pub(crate) fn stream_error(_ctx: &Ctx) -> (Event, ErrorResponse) {
    let response = error(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        Vec::new(),
    );
    let body: Value = serde_json::from_slice(&response.body).unwrap_or_default();
    (Event::data(&body), response)
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
        Finish::ContentFilter => "SAFETY",
    }
}

/// `usageMetadata` after `candidates` output tokens (thoughts are reported separately, on top).
fn usage_metadata(usage: &Usage, candidates: u64) -> Value {
    let mut metadata = json!({
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": usage.prompt_tokens + candidates + usage.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.prompt_tokens}],
    });
    if usage.reasoning_tokens > 0 {
        metadata["thoughtsTokenCount"] = json!(usage.reasoning_tokens);
    }
    if usage.cached_tokens > 0 {
        metadata["cachedContentTokenCount"] = json!(usage.cached_tokens);
    }
    metadata
}

fn response(ctx: &Ctx, parts: Vec<Value>, finish: Option<Finish>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish_reason(finish));
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": ctx.model,
           "responseId": format!("mock{}", ctx.seq)})
}

fn function_call_parts(reply: &Reply) -> Vec<Value> {
    reply
        .tool_calls
        .iter()
        .map(|call| {
            let mut part = json!({"functionCall": {"name": call.name, "args": call.arguments}});
            if let Some(signature) = &call.thought_signature {
                part["thoughtSignature"] = json!(signature);
            }
            part
        })
        .collect()
}

pub(crate) fn answer(ctx: &Ctx, reply: &Reply) -> Answer {
    let final_candidates = reply
        .usage
        .completion_tokens
        .saturating_sub(reply.usage.reasoning_tokens);
    if !ctx.stream {
        let mut parts = Vec::with_capacity(reply.tool_calls.len() + 1);
        if !reply.text.is_empty() || reply.tool_calls.is_empty() {
            parts.push(json!({"text": reply.text}));
        }
        parts.extend(function_call_parts(reply));
        let usage = usage_metadata(&reply.usage, final_candidates);
        return Answer::Json(response(ctx, parts, Some(reply.finish), usage));
    }
    let mut bodies: Vec<Vec<Value>> = reply
        .text_chunks
        .iter()
        .map(|text| vec![json!({"text": text})])
        .collect();
    if !reply.tool_calls.is_empty() {
        bodies.push(function_call_parts(reply));
    }
    if bodies.is_empty() {
        bodies.push(vec![json!({"text": ""})]);
    }
    let last = bodies.len() - 1;
    let mut text_so_far = 0;
    let events = bodies
        .into_iter()
        .enumerate()
        .map(|(index, parts)| {
            let candidates = if index == last {
                final_candidates
            } else {
                text_so_far += parts
                    .iter()
                    .map(|p| count_words(p["text"].as_str().unwrap_or_default()))
                    .sum::<u64>();
                text_so_far.min(final_candidates)
            };
            let finish = (index == last).then_some(reply.finish);
            Event::data(&response(
                ctx,
                parts,
                finish,
                usage_metadata(&reply.usage, candidates),
            ))
        })
        .collect();
    Answer::Stream {
        framing: if ctx.sse {
            Framing::SseCrlf
        } else {
            Framing::JsonArray
        },
        events,
    }
}

fn embedding_of(content: &Value, dimensions: Option<u64>) -> (Value, u64) {
    let text = part_texts(content).join(" ");
    let dimensions = dimensions.map_or(DEFAULT_EMBEDDING_DIMENSIONS, |d| d as usize);
    (
        json!({"values": embed::vector(&text, dimensions)}),
        count_words(&text),
    )
}

pub(crate) fn embed(body: &Value) -> (Value, Option<Usage>) {
    let (embedding, tokens) = embedding_of(&body["content"], body["outputDimensionality"].as_u64());
    (json!({"embedding": embedding}), Some(Usage::new(tokens, 0)))
}

pub(crate) fn batch_embed(body: &Value) -> (Value, Option<Usage>) {
    let mut tokens = 0;
    let embeddings: Vec<Value> = body["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|request| {
            let (embedding, words) = embedding_of(
                &request["content"],
                request["outputDimensionality"].as_u64(),
            );
            tokens += words;
            embedding
        })
        .collect();
    (
        json!({"embeddings": embeddings}),
        Some(Usage::new(tokens, 0)),
    )
}

pub(crate) fn count_tokens(ctx: &Ctx, body: &Value) -> (Value, Option<Usage>) {
    let words = read_prompt(&ctx.route, body).words;
    (
        json!({"totalTokens": words, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": words}]}),
        Some(Usage::new(words, 0)),
    )
}

pub(crate) fn models() -> Value {
    json!({"models": [
        {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
         "inputTokenLimit": INPUT_TOKEN_LIMIT, "outputTokenLimit": 65_536,
         "supportedGenerationMethods": ["generateContent", "countTokens"]},
        {"name": "models/gemini-embedding-001", "version": "001", "displayName": "Gemini Embedding 001",
         "inputTokenLimit": 2048, "outputTokenLimit": 1,
         "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"]}]})
}

pub(crate) fn common_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(
        "server",
        HeaderValue::from_static("scaffolding on HTTPServer2"),
    );
    headers.insert(
        "vary",
        HeaderValue::from_static("Origin, X-Origin, Referer"),
    );
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::route::Provider;

    fn route() -> Route {
        Route {
            provider: Provider::Gemini,
            endpoint: Endpoint::GenerateContent,
            path_model: Some("gemini-2.5-flash".into()),
            azure_dated: false,
        }
    }

    #[test]
    fn consecutive_same_role_contents_are_rejected() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]}]});
        let body: Value =
            serde_json::from_slice(&validate_contents(&body).unwrap_err().body).unwrap();
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("alternate")
        );
    }

    #[test]
    fn function_responses_must_be_objects() {
        let body = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "sunny"}}]}]});
        assert!(validate_contents(&body).is_err());
    }

    #[test]
    fn prompt_reads_function_response_strings() {
        let body = json!({"systemInstruction": {"parts": [{"text": "Be terse."}]}, "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"result": "18C, sunny"}}}]}],
            "generationConfig": {"maxOutputTokens": 3}});
        let prompt = read_prompt(&route(), &body);
        assert_eq!(prompt.last_user_text, "18C, sunny");
        assert_eq!(prompt.words, 2 + 1 + 2);
        assert_eq!(prompt.max_tokens, Some(3));
        assert_eq!(prompt.model.as_deref(), Some("gemini-2.5-flash"));
    }
}
