//! OpenAI Chat Completions and Embeddings on the wire, with Azure OpenAI's variations (auth, error
//! envelope, content-filter fields, the empty first stream chunk, `api-version`).

use http::HeaderMap;
use http::header::HeaderValue;
use serde_json::{Map, Value, json};

use super::{
    Answer, Ctx, ErrorResponse, Event, Failure, Framing, mask_key, query_param, request_id,
    retry_after_header, retry_seconds,
};
use crate::mock::config::DEFAULT_EMBEDDING_DIMENSIONS;
use crate::mock::embed;
use crate::mock::reply::{
    Finish, Prompt, PromptBuilder, Reply, Usage, count_words, split_arguments,
};
use crate::mock::route::{Endpoint, Route};

/// The underlying model Azure names in responses, whatever the deployment is called.
pub(crate) const AZURE_MODEL: &str = "gpt-4o-2024-08-06";

/// Models listed by `GET /v1/models`.
const MODELS: [&str; 4] = [
    "gpt-4o",
    "gpt-4o-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

const VALID_ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

pub(crate) fn read_prompt(route: &Route, body: &Value) -> Prompt {
    let mut prompt = PromptBuilder::default();
    let mut in_user_turn = false;
    for message in body["messages"].as_array().into_iter().flatten() {
        let role = message["role"].as_str().unwrap_or_default();
        let text = content_text(&message["content"]);
        if matches!(role, "user" | "tool" | "function") {
            if !in_user_turn {
                prompt.start_user_turn();
                in_user_turn = true;
            }
            if !text.is_empty() {
                prompt.user_text(&text);
            }
        } else {
            in_user_turn = false;
            prompt.count(&text);
        }
    }
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64());
    let model = body["model"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| route.path_model.clone());
    prompt.finish(max_tokens, model)
}

/// The text of a message `content`: a string or an array of parts, of which `text` parts count.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part["type"] == "text")
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> ErrorResponse {
    ErrorResponse::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> ErrorResponse {
    error(400, message, "invalid_request_error", param, code)
}

fn azure_error(status: u16, code: &str, message: &str) -> ErrorResponse {
    ErrorResponse::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

pub(crate) fn validate(
    ctx: &Ctx,
    query: Option<&str>,
    body: &Value,
    azure: bool,
) -> Result<(), ErrorResponse> {
    if azure && ctx.route.azure_dated {
        match query_param(query, "api-version") {
            None => return Err(azure_error(404, "404", "Resource not found")),
            Some(version) if !is_api_version(&version) => {
                return Err(azure_error(400, "BadRequest", "API version not supported"));
            }
            Some(_) => {}
        }
    }
    if ctx.route.endpoint == Endpoint::Models {
        return Ok(());
    }
    if !body.is_object() {
        return Err(invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP \
             library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you \
             have trouble figuring out how to fix this, please contact us through our help center at \
             help.openai.com.)",
            None,
            None,
        ));
    }
    let model_required = !(azure && ctx.route.azure_dated);
    if model_required && !body["model"].is_string() {
        return Err(invalid("you must provide a model parameter", None, None));
    }
    match ctx.route.endpoint {
        Endpoint::ChatCompletions => validate_chat(body),
        Endpoint::Embeddings => validate_embeddings(body),
        _ => Ok(()),
    }
}

/// Dated Azure API versions look like `2024-10-21` or `2025-04-01-preview`.
fn is_api_version(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .zip([4, 2, 2])
            .all(|(part, len)| part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
        && date >= "2022-12-01"
}

fn validate_chat(body: &Value) -> Result<(), ErrorResponse> {
    let Some(messages) = body["messages"].as_array() else {
        return Err(invalid(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        ));
    };
    if messages.is_empty() {
        return Err(invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    if let Some(temperature) = body["temperature"].as_f64()
        && temperature > 2.0
    {
        return Err(invalid(
            &format!(
                "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {temperature} instead."
            ),
            Some("temperature"),
            Some("decimal_above_max_value"),
        ));
    }
    // Tool call ids the assistant issued that still await a `tool` message.
    let mut awaiting: Vec<String> = Vec::new();
    let mut awaiting_since = 0;
    for (index, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !VALID_ROLES.contains(&role) {
            return Err(invalid(
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ),
                Some(&format!("messages[{index}].role")),
                Some("invalid_value"),
            ));
        }
        if role == "tool" {
            let id = message["tool_call_id"].as_str().unwrap_or_default();
            let Some(position) = awaiting.iter().position(|pending| pending == id) else {
                return Err(invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                    Some(&format!("messages.[{index}].role")),
                    None,
                ));
            };
            awaiting.remove(position);
            continue;
        }
        if !awaiting.is_empty() {
            return Err(unanswered_tool_calls(awaiting_since, &awaiting));
        }
        if role == "assistant" {
            awaiting = message["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|call| call["id"].as_str().map(str::to_owned))
                .collect();
            awaiting_since = index;
        }
    }
    if awaiting.is_empty() {
        Ok(())
    } else {
        Err(unanswered_tool_calls(awaiting_since, &awaiting))
    }
}

fn unanswered_tool_calls(index: usize, ids: &[String]) -> ErrorResponse {
    invalid(
        &format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. \
             The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ),
        Some(&format!("messages.[{index}].role")),
        None,
    )
}

fn validate_embeddings(body: &Value) -> Result<(), ErrorResponse> {
    let empty = match &body["input"] {
        Value::Null => {
            return Err(invalid(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            ));
        }
        Value::String(text) => text.is_empty(),
        Value::Array(items) => {
            items.is_empty()
                || items
                    .iter()
                    .any(|item| item == "" || item.as_array().is_some_and(Vec::is_empty))
        }
        _ => true,
    };
    if empty {
        return Err(invalid(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            None,
            None,
        ));
    }
    Ok(())
}

pub(crate) fn failure(ctx: &Ctx, failure: &Failure, azure: bool) -> ErrorResponse {
    match failure {
        Failure::MissingKey if azure => azure_error(
            401,
            "401",
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        ),
        Failure::MissingKey => error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer \
             auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're \
             accessing the API from your browser and are prompted for a username and password. You can obtain an API \
             key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ),
        Failure::InvalidKey { .. } | Failure::Status(401) if azure => azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an \
             active subscription and use a correct regional API endpoint for your resource.",
        ),
        Failure::InvalidKey { presented } => invalid_key(&mask_key(presented)),
        Failure::Status(401) => invalid_key("sk-****"),
        Failure::RateLimited(hint) => rate_limited(ctx, *hint, azure),
        Failure::Status(429) => rate_limited(ctx, None, azure),
        Failure::ContextLength { prompt_tokens } => invalid(
            &format!(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in {} tokens. \
                 Please reduce the length of the messages.",
                128_000 + prompt_tokens
            ),
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        Failure::Status(status) => status_error(ctx, *status, azure),
    }
}

fn invalid_key(masked: &str) -> ErrorResponse {
    error(
        401,
        &format!(
            "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
        ),
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    )
}

fn rate_limited(ctx: &Ctx, hint: Option<crate::mock::RetryAfter>, azure: bool) -> ErrorResponse {
    let seconds = retry_seconds(hint);
    let response = if azure {
        let version = if ctx.route.azure_dated {
            "2024-10-21"
        } else {
            "v1"
        };
        azure_error(
            429,
            "429",
            &format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {version} have exceeded \
                 call rate limit of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: \
                 https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
                seconds.unwrap_or(1)
            ),
        )
        .with_header("x-ratelimit-remaining-requests", 0)
        .with_header("x-ratelimit-remaining-tokens", 0)
    } else {
        let wait = seconds.map_or_else(|| "20ms".to_owned(), |s| format!("{s}s"));
        error(
            429,
            &format!(
                "Rate limit reached for {} in organization org-mock on requests per min (RPM): Limit 500, Used 500, \
                 Requested 1. Please try again in {wait}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                ctx.model
            ),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        )
        .with_header("x-ratelimit-limit-requests", 500)
        .with_header("x-ratelimit-remaining-requests", 0)
        .with_header("x-ratelimit-reset-requests", wait)
    };
    retry_after_header(response, hint)
}

fn status_error(ctx: &Ctx, status: u16, azure: bool) -> ErrorResponse {
    match (status, azure) {
        (502 | 504, _) => ErrorResponse::proxy_html(status),
        (404, true) => azure_error(
            404,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 \
             minutes, please wait a moment and try again.",
        ),
        (404, false) => error(
            404,
            &format!(
                "The model `{}` does not exist or you do not have access to it.",
                ctx.model
            ),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        (403, _) => error(
            403,
            "Country, region, or territory not supported",
            "request_forbidden",
            None,
            Some("unsupported_country_region_territory"),
        ),
        (500, true) => error(
            500,
            "The server had an error processing your request. Sorry about that! You can retry your request, or contact \
             us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing \
             this error.",
            "server_error",
            None,
            None,
        ),
        (500, false) => server_error(500),
        (503, _) => error(
            503,
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
            None,
        ),
        (status, _) if status >= 500 => server_error(status),
        (status, _) => error(
            status,
            "Your request could not be processed.",
            "invalid_request_error",
            None,
            None,
        ),
    }
}

fn server_error(status: u16) -> ErrorResponse {
    error(
        status,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    )
}

pub(crate) fn stream_error(_ctx: &Ctx) -> (Event, ErrorResponse) {
    let body = json!({"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": null, "code": null}});
    (Event::data(&body), ErrorResponse::json(500, &body))
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::ContentFilter => "content_filter",
    }
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

fn tool_call_id(ctx: &Ctx, reply: &Reply, index: usize) -> String {
    reply.tool_calls[index]
        .id
        .clone()
        .unwrap_or_else(|| format!("call_mock{}x{index}", ctx.seq))
}

/// Azure's per-category content-filter verdicts, all clean.
fn filter_results(include_jailbreak: bool) -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    let mut results = json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe});
    if include_jailbreak {
        results["jailbreak"] = json!({"filtered": false, "detected": false});
    }
    results
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": filter_results(true)}])
}

pub(crate) fn answer(ctx: &Ctx, reply: &Reply, azure: bool) -> Answer {
    if ctx.stream {
        Answer::Stream {
            framing: Framing::Sse,
            events: stream_events(ctx, reply, azure),
        }
    } else {
        Answer::Json(completion(ctx, reply, azure))
    }
}

fn completion(ctx: &Ctx, reply: &Reply, azure: bool) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if reply.text.is_empty() && !reply.tool_calls.is_empty() { Value::Null } else { Value::from(reply.text.as_str()) },
        "refusal": null,
        "annotations": [],
    });
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                json!({"id": tool_call_id(ctx, reply, index), "type": "function",
                       "function": {"name": call.name, "arguments": call.arguments_json()}})
            })
            .collect();
    }
    let mut choice = json!({"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(reply.finish)});
    let mut body = json!({
        "id": format!("chatcmpl-mock{}", ctx.seq),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [],
        "usage": usage_json(&reply.usage),
        "system_fingerprint": "fp_mock",
    });
    if azure {
        choice["content_filter_results"] = filter_results(false);
        body["prompt_filter_results"] = prompt_filter_results();
    } else {
        body["service_tier"] = json!("default");
    }
    body["choices"] = json!([choice]);
    body
}

fn stream_events(ctx: &Ctx, reply: &Reply, azure: bool) -> Vec<Event> {
    let id = format!("chatcmpl-mock{}", ctx.seq);
    // Field order as OpenAI sends it; `usage` is present (null until the last chunk) only with include_usage.
    let chunk_with_usage = |choices: Value, usage: Value| -> Event {
        let mut object = Map::new();
        object.insert("id".into(), json!(id));
        object.insert("object".into(), json!("chat.completion.chunk"));
        object.insert("created".into(), json!(ctx.created));
        object.insert("model".into(), json!(ctx.model));
        object.insert("system_fingerprint".into(), json!("fp_mock"));
        object.insert("choices".into(), choices);
        if ctx.include_usage {
            object.insert("usage".into(), usage);
        }
        Event::data(&Value::Object(object))
    };
    let chunk = |choices: Value| chunk_with_usage(choices, Value::Null);
    let choice = |delta: Value, finish: Option<&str>| -> Value {
        let mut choice =
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
        if azure {
            choice["content_filter_results"] = if delta.get("content").is_some_and(|c| c != "") {
                filter_results(false)
            } else {
                json!({})
            };
        }
        json!([choice])
    };

    let mut events = Vec::with_capacity(reply.text_chunks.len() + 4 * reply.tool_calls.len() + 5);
    if azure {
        events.push(Event::data(&json!({
            "choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": prompt_filter_results(),
        })));
    }
    events.push(chunk(choice(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )));
    for text in &reply.text_chunks {
        events.push(chunk(choice(json!({"content": text}), None)));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        let start = json!({"tool_calls": [{"index": index, "id": tool_call_id(ctx, reply, index), "type": "function",
                                           "function": {"name": call.name, "arguments": ""}}]});
        events.push(chunk(choice(start, None)));
        for fragment in split_arguments(&call.arguments_json()) {
            events.push(chunk(choice(
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                None,
            )));
        }
    }
    events.push(chunk(choice(json!({}), Some(finish_reason(reply.finish)))));
    if ctx.include_usage {
        events.push(chunk_with_usage(json!([]), usage_json(&reply.usage)));
    }
    events.push(Event {
        name: None,
        data: "[DONE]".to_owned(),
    });
    events
}

/// One embeddings input: the text that seeds its vector and its token count.
fn embedding_inputs(input: &Value) -> Vec<(String, u64)> {
    let token_array =
        |items: &Vec<Value>| (Value::Array(items.clone()).to_string(), items.len() as u64);
    match input {
        Value::String(text) => vec![(text.clone(), count_words(text))],
        Value::Array(items) if items.iter().all(Value::is_number) => vec![token_array(items)],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(tokens) => token_array(tokens),
                other => {
                    let text = other.as_str().unwrap_or_default();
                    (text.to_owned(), count_words(text))
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn embeddings(ctx: &Ctx, body: &Value) -> (Value, Option<Usage>) {
    let dimensions = body["dimensions"]
        .as_u64()
        .map_or(DEFAULT_EMBEDDING_DIMENSIONS, |d| d as usize);
    let base64 = body["encoding_format"] == "base64";
    let inputs = embedding_inputs(&body["input"]);
    let tokens: u64 = inputs.iter().map(|(_, tokens)| tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let vector = embed::vector(text, dimensions);
            let embedding = if base64 {
                json!(embed::to_base64(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let usage = Usage::new(tokens, 0);
    let body = json!({"object": "list", "data": data, "model": ctx.model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    (body, Some(usage))
}

pub(crate) fn models() -> Value {
    let data: Vec<Value> =
        MODELS.iter().map(|id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"})).collect();
    json!({"object": "list", "data": data})
}

pub(crate) fn common_headers(ctx: &Ctx, azure: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(12);
    let id = request_id("req_", ctx.seq);
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value.clone());
        if azure {
            headers.insert("apim-request-id", value);
        }
    }
    if azure {
        headers.insert("x-ms-region", HeaderValue::from_static("East US"));
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("100"),
        );
        headers.insert(
            "x-ratelimit-limit-tokens",
            HeaderValue::from_static("100000"),
        );
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("99"),
        );
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("99000"),
        );
    } else {
        headers.insert("openai-version", HeaderValue::from_static("2020-10-01"));
        headers.insert("openai-organization", HeaderValue::from_static("user-mock"));
        headers.insert("openai-processing-ms", HeaderValue::from_static("1"));
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("10000"),
        );
        headers.insert(
            "x-ratelimit-limit-tokens",
            HeaderValue::from_static("30000000"),
        );
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("9999"),
        );
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("29999990"),
        );
        headers.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("6ms"),
        );
        headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("0s"));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_api_versions_are_dated() {
        for ok in ["2024-10-21", "2025-04-01-preview", "2023-05-15"] {
            assert!(is_api_version(ok), "{ok}");
        }
        for bad in [
            "",
            "latest",
            "2024-1-21",
            "2024-10-21-beta",
            "2019-01-01",
            "0613",
        ] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn chat_validation_matches_openai_rules() {
        let ok = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"}]});
        assert!(validate_chat(&ok).is_ok());
        let orphan_tool = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "r"}]});
        assert_eq!(validate_chat(&orphan_tool).unwrap_err().status, 400);
        let unanswered = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "next"}]});
        let body: Value =
            serde_json::from_slice(&validate_chat(&unanswered).unwrap_err().body).unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("call_9")
        );
        let bad_role = json!({"messages": [{"role": "model", "content": "x"}]});
        let body: Value =
            serde_json::from_slice(&validate_chat(&bad_role).unwrap_err().body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_value");
    }

    #[test]
    fn prompt_echoes_the_trailing_user_and_tool_messages() {
        let route = Route {
            provider: crate::mock::Provider::OpenAi,
            endpoint: Endpoint::ChatCompletions,
            path_model: None,
            azure_dated: false,
        };
        let body = json!({"model": "gpt-4o", "max_tokens": 9, "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "c", "content": "18C, sunny"},
            {"role": "user", "content": "thanks"}]});
        let prompt = read_prompt(&route, &body);
        assert_eq!(prompt.last_user_text, "18C, sunny thanks");
        assert_eq!(prompt.words, 2 + 3 + 2 + 1);
        assert_eq!(prompt.max_tokens, Some(9));
        assert_eq!(prompt.model.as_deref(), Some("gpt-4o"));
    }
}
