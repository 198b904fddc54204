//! Anthropic Messages on the wire: named SSE events, split usage, `{"type":"error"}` bodies.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::HeaderValue;
use serde_json::{Value, json};

use super::{
    Answer, Ctx, ErrorResponse, Event, Failure, Framing, header, request_id, retry_after_header,
    retry_seconds,
};
use crate::mock::reply::{Finish, Prompt, PromptBuilder, Reply, split_arguments};
use crate::mock::route::Endpoint;

/// Models listed by `GET /v1/models`: (id, display name, release date).
const MODELS: [(&str, &str, &str); 2] = [
    (
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
    ),
];

pub(crate) fn read_prompt(body: &Value) -> Prompt {
    let mut prompt = PromptBuilder::default();
    match &body["system"] {
        Value::String(text) => prompt.count(text),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .for_each(|text| prompt.count(text)),
        _ => {}
    }
    let mut in_user_turn = false;
    for message in body["messages"].as_array().into_iter().flatten() {
        let user = message["role"] == "user";
        if user && !in_user_turn {
            prompt.start_user_turn();
        }
        in_user_turn = user;
        for text in message_texts(&message["content"]) {
            if user {
                prompt.user_text(&text);
            } else {
                prompt.count(&text);
            }
        }
    }
    prompt.finish(
        body["max_tokens"].as_u64(),
        body["model"].as_str().map(str::to_owned),
    )
}

/// Text of a message's content: a string, or text blocks and the text inside tool results.
fn message_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(text) => vec![text.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .flat_map(|block| match block["type"].as_str() {
                Some("text") => block["text"]
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                Some("tool_result") => match &block["content"] {
                    Value::String(text) => vec![text.clone()],
                    Value::Array(inner) => inner
                        .iter()
                        .filter_map(|b| b["text"].as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn error(ctx: &Ctx, status: u16, kind: &str, message: &str) -> ErrorResponse {
    ErrorResponse::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id("req_", ctx.seq)}),
    )
}

fn invalid(ctx: &Ctx, message: &str) -> ErrorResponse {
    error(ctx, 400, "invalid_request_error", message)
}

pub(crate) fn validate(ctx: &Ctx, headers: &HeaderMap, body: &Value) -> Result<(), ErrorResponse> {
    match header(headers, "anthropic-version") {
        None => return Err(invalid(ctx, "anthropic-version: header is required")),
        Some(version) if !is_version_date(&version) => {
            return Err(invalid(
                ctx,
                &format!("anthropic-version: \"{version}\" is not a valid version"),
            ));
        }
        Some(_) => {}
    }
    if ctx.route.endpoint != Endpoint::Messages {
        return Ok(());
    }
    if !body.is_object() {
        return Err(invalid(
            ctx,
            "There was an error parsing the body of your request. Please make sure it is valid JSON.",
        ));
    }
    for field in ["model", "messages", "max_tokens"] {
        if body[field].is_null() {
            return Err(invalid(ctx, &format!("{field}: Field required")));
        }
    }
    if body["temperature"].as_f64().is_some_and(|t| t > 1.0) {
        return Err(invalid(
            ctx,
            "temperature: Input should be less than or equal to 1",
        ));
    }
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, message) in messages.iter().enumerate() {
        validate_message(ctx, messages, index, message)?;
    }
    Ok(())
}

fn validate_message(
    ctx: &Ctx,
    messages: &[Value],
    index: usize,
    message: &Value,
) -> Result<(), ErrorResponse> {
    let role = message["role"].as_str().unwrap_or_default();
    if role == "system" {
        return Err(invalid(
            ctx,
            "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \
             \"system\" as an input message role.",
        ));
    }
    if role != "user" && role != "assistant" {
        return Err(invalid(
            ctx,
            &format!("messages.{index}.role: Input should be 'user' or 'assistant'"),
        ));
    }
    let last = index + 1 == messages.len();
    let content = &message["content"];
    let empty = match content {
        Value::String(text) => text.is_empty(),
        Value::Array(blocks) => blocks.is_empty(),
        _ => true,
    };
    if empty && !(last && role == "assistant") {
        return Err(invalid(
            ctx,
            &format!(
                "messages.{index}: all messages must have non-empty content except for the optional final assistant message"
            ),
        ));
    }
    let blocks = content.as_array().map(Vec::as_slice).unwrap_or_default();
    if blocks
        .iter()
        .any(|block| block["type"] == "text" && block["text"].as_str().is_none_or(str::is_empty))
    {
        return Err(invalid(
            ctx,
            "messages: text content blocks must be non-empty",
        ));
    }
    if role == "user" {
        let previous_uses = index
            .checked_sub(1)
            .map(|i| tool_use_ids(&messages[i]))
            .unwrap_or_default();
        for (position, block) in blocks.iter().enumerate() {
            if block["type"] != "tool_result" {
                continue;
            }
            let id = block["tool_use_id"].as_str().unwrap_or_default();
            if !previous_uses.iter().any(|used| used == id) {
                return Err(invalid(
                    ctx,
                    &format!(
                        "messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                         Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ),
                ));
            }
        }
    }
    let uses = tool_use_ids(message);
    if role == "assistant" && !uses.is_empty() && !last {
        let next = &messages[index + 1];
        let answered: Vec<&str> = next["content"]
            .as_array()
            .into_iter()
            .flatten()
            .take_while(|block| block["type"] == "tool_result")
            .filter_map(|block| block["tool_use_id"].as_str())
            .collect();
        let missing: Vec<&str> = uses
            .iter()
            .map(String::as_str)
            .filter(|id| !answered.contains(id))
            .collect();
        if next["role"] != "user" || !missing.is_empty() {
            return Err(invalid(
                ctx,
                &format!(
                    "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each \
                     `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    index + 1,
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Versions are dates (`2023-06-01`; the current Python SDK sends `2026-10-21`). The API rejects dates it
/// does not know; the mock cannot know future ones, so it rejects only what is not a date.
fn is_version_date(version: &str) -> bool {
    let parts: Vec<&str> = version.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .zip([4, 2, 2])
            .all(|(part, len)| part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
        && version >= "2023-01-01"
}

fn tool_use_ids(message: &Value) -> Vec<String> {
    message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| block["type"] == "tool_use")
        .filter_map(|block| block["id"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn failure(ctx: &Ctx, failure: &Failure) -> ErrorResponse {
    match failure {
        Failure::MissingKey => error(
            ctx,
            401,
            "authentication_error",
            "x-api-key header is required",
        ),
        Failure::InvalidKey { .. } | Failure::Status(401) => {
            error(ctx, 401, "authentication_error", "invalid x-api-key")
        }
        Failure::RateLimited(hint) => rate_limited(ctx, *hint),
        Failure::Status(429) => rate_limited(ctx, None),
        Failure::ContextLength { prompt_tokens } => invalid(
            ctx,
            &format!(
                "prompt is too long: {} tokens > 200000 maximum",
                200_000 + prompt_tokens
            ),
        ),
        Failure::Status(status) => status_error(ctx, *status),
    }
}

fn rate_limited(ctx: &Ctx, hint: Option<crate::mock::RetryAfter>) -> ErrorResponse {
    let reset = rfc3339(SystemTime::now() + Duration::from_secs(retry_seconds(hint).unwrap_or(1)));
    let response = error(
        ctx,
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit \
         (https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please reduce the \
         prompt length or the maximum tokens requested, or try again later. You may also contact sales at \
         https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
    )
    .with_header("anthropic-ratelimit-requests-limit", 50)
    .with_header("anthropic-ratelimit-requests-remaining", 0)
    .with_header("anthropic-ratelimit-requests-reset", reset);
    retry_after_header(response, hint)
}

fn status_error(ctx: &Ctx, status: u16) -> ErrorResponse {
    let (kind, message) = match status {
        400 => ("invalid_request_error", "Invalid request".to_owned()),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or \
             purchase credits."
                .to_owned(),
        ),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource.".to_owned()),
        404 => ("not_found_error", format!("model: {}", ctx.model)),
        409 => ("conflict_error", "Conflict".to_owned()),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes.".to_owned()),
        502 => return ErrorResponse::proxy_html(status),
        504 => ("timeout_error", "Request timed out".to_owned()),
        529 => ("overloaded_error", "Overloaded".to_owned()),
        status if status >= 500 => ("api_error", "Internal server error".to_owned()),
        _ => ("invalid_request_error", "Invalid request".to_owned()),
    };
    error(ctx, status, kind, &message)
}

pub(crate) fn stream_error(ctx: &Ctx) -> (Event, ErrorResponse) {
    let body =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    (
        Event::named("error", &body),
        error(ctx, 529, "overloaded_error", "Overloaded"),
    )
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::ContentFilter => "refusal",
    }
}

fn usage_json(reply: &Reply, output_tokens: u64) -> Value {
    let usage = &reply.usage;
    json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(usage.cached_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

fn tool_use_id(ctx: &Ctx, reply: &Reply, index: usize) -> String {
    reply.tool_calls[index]
        .id
        .clone()
        .unwrap_or_else(|| format!("toolu_mock{}x{index}", ctx.seq))
}

fn message_id(ctx: &Ctx) -> String {
    format!("msg_mock{}", ctx.seq)
}

pub(crate) fn answer(ctx: &Ctx, reply: &Reply) -> Answer {
    if ctx.stream {
        return Answer::Stream {
            framing: Framing::Sse,
            events: stream_events(ctx, reply),
        };
    }
    let mut content = Vec::with_capacity(reply.tool_calls.len() + 1);
    if !reply.text.is_empty() {
        content.push(json!({"type": "text", "text": reply.text}));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        content.push(json!({"type": "tool_use", "id": tool_use_id(ctx, reply, index), "name": call.name, "input": call.arguments}));
    }
    Answer::Json(json!({
        "id": message_id(ctx),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(reply.finish),
        "stop_sequence": null,
        "usage": usage_json(reply, reply.usage.completion_tokens),
    }))
}

fn stream_events(ctx: &Ctx, reply: &Reply) -> Vec<Event> {
    let mut events = Vec::with_capacity(reply.text_chunks.len() + 4 * reply.tool_calls.len() + 6);
    events.push(Event::named(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id(ctx), "type": "message", "role": "assistant", "model": ctx.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage_json(reply, 1)}}),
    ));
    let ping = Event::named("ping", &json!({"type": "ping"}));
    let mut block = 0;
    if !reply.text.is_empty() {
        events.push(Event::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": block, "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(ping.clone());
        for text in &reply.text_chunks {
            events.push(Event::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        events.push(Event::named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": block}),
        ));
        block += 1;
    } else {
        events.push(ping);
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        events.push(Event::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": block, "content_block": {
                "type": "tool_use", "id": tool_use_id(ctx, reply, index), "name": call.name, "input": {}}}),
        ));
        let fragments =
            std::iter::once(String::new()).chain(split_arguments(&call.arguments_json()));
        for fragment in fragments {
            events.push(Event::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            ));
        }
        events.push(Event::named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": block}),
        ));
        block += 1;
    }
    events.push(Event::named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reply.finish), "stop_sequence": null},
                "usage": {"output_tokens": reply.usage.completion_tokens}}),
    ));
    events.push(Event::named(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    events
}

pub(crate) fn models() -> Value {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, created)| json!({"type": "model", "id": id, "display_name": name, "created_at": created}))
        .collect();
    json!({"data": data, "has_more": false, "first_id": MODELS[0].0, "last_id": MODELS[MODELS.len() - 1].0})
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn common_headers(ctx: &Ctx) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    if let Ok(value) = HeaderValue::from_str(&request_id("req_", ctx.seq)) {
        headers.insert("request-id", value);
    }
    headers.insert(
        "anthropic-organization-id",
        HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    let reset = rfc3339(SystemTime::now() + Duration::from_secs(1));
    if let Ok(reset) = HeaderValue::from_str(&reset) {
        headers.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("4000"),
        );
        headers.insert(
            "anthropic-ratelimit-requests-remaining",
            HeaderValue::from_static("3999"),
        );
        headers.insert("anthropic-ratelimit-requests-reset", reset.clone());
        headers.insert(
            "anthropic-ratelimit-tokens-limit",
            HeaderValue::from_static("2000000"),
        );
        headers.insert(
            "anthropic-ratelimit-tokens-remaining",
            HeaderValue::from_static("1999000"),
        );
        headers.insert("anthropic-ratelimit-tokens-reset", reset);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::route::{Provider, Route};

    fn ctx() -> Ctx {
        Ctx {
            seq: 1,
            route: Route {
                provider: Provider::Anthropic,
                endpoint: Endpoint::Messages,
                path_model: None,
                azure_dated: false,
            },
            model: "claude-sonnet-4-5".into(),
            created: 0,
            stream: false,
            include_usage: false,
            sse: true,
        }
    }

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        headers
    }

    fn message_of(response: ErrorResponse) -> String {
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        body["error"]["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn requires_version_header_and_max_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            message_of(validate(&ctx(), &HeaderMap::new(), &body).unwrap_err()),
            "anthropic-version: header is required"
        );
        assert_eq!(
            message_of(validate(&ctx(), &headers(), &body).unwrap_err()),
            "max_tokens: Field required"
        );
    }

    #[test]
    fn tool_use_must_be_answered_first_in_the_next_message() {
        let body = |next: Value| {
            json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
                next]})
        };
        let answered = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]});
        assert!(validate(&ctx(), &headers(), &body(answered)).is_ok());
        let late = json!({"role": "user", "content": [{"type": "text", "text": "and?"}, {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]});
        assert!(
            message_of(validate(&ctx(), &headers(), &body(late)).unwrap_err()).contains("toolu_1")
        );
    }

    #[test]
    fn prompt_merges_consecutive_user_messages_and_reads_tool_results() {
        let body = json!({"system": [{"type": "text", "text": "Be terse."}], "max_tokens": 7, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "18C, sunny"}]}]},
            {"role": "user", "content": "thanks"}]});
        let prompt = read_prompt(&body);
        assert_eq!(prompt.last_user_text, "18C, sunny thanks");
        assert_eq!(prompt.words, 2 + 1 + 1 + 2 + 1);
    }
}
