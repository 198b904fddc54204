//! End-to-end translation matrix: inbound surface (OpenAI, Anthropic) × provider × streaming or not, with tools.

use http::HeaderMap;
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{
    ApiKey, BackendTarget, ProviderKind, StreamTranslator, build_chat_request, parse_chat_response,
    parse_error_response,
};
use crate::api::encode::{
    AnthropicSseEncoder, OpenAiSseEncoder, anthropic_response, openai_response,
};
use crate::api::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use crate::api::{anthropic, anthropic_bridge, parse_chat_request, parse_messages_request};
use crate::providers::sse::SseParser;

const PROVIDERS: [ProviderKind; 5] = [
    ProviderKind::OpenAi,
    ProviderKind::AzureOpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::OpenAiCompatible,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    OpenAi,
    Anthropic,
}

const OPENAI_REQUEST: &str = r#"{
  "model": "team-default",
  "messages": [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    {"role": "user", "content": "And Rome?"}
  ],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
  "max_completion_tokens": 200
}"#;

const ANTHROPIC_REQUEST: &str = r#"{
  "model": "team-default", "max_tokens": 200,
  "system": "Be terse.",
  "messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [
      {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
    {"role": "user", "content": [
      {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C, sunny"},
      {"type": "text", "text": "And Rome?"}]}
  ],
  "tools": [{"name": "get_weather", "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
}"#;

fn canonical(surface: Surface, stream: bool) -> ChatRequest {
    let mut request = match surface {
        Surface::OpenAi => parse_chat_request(OPENAI_REQUEST.as_bytes()).unwrap(),
        Surface::Anthropic => anthropic_bridge::request_to_canonical(
            parse_messages_request(ANTHROPIC_REQUEST.as_bytes()).unwrap(),
        )
        .unwrap(),
    };
    request.stream = Some(stream);
    request
}

fn target(provider: ProviderKind) -> BackendTarget {
    let mut target = match provider {
        ProviderKind::OpenAi => BackendTarget::new(provider, "http://127.0.0.1:9/v1", "gpt-4o"),
        ProviderKind::AzureOpenAi => {
            let mut target = BackendTarget::new(provider, "http://127.0.0.1:9", "gpt-4o");
            target.api_version = Some("2024-10-21".into());
            target
        }
        ProviderKind::Anthropic => {
            BackendTarget::new(provider, "http://127.0.0.1:9", "claude-sonnet-4-5")
        }
        ProviderKind::Gemini => {
            BackendTarget::new(provider, "http://127.0.0.1:9", "gemini-2.5-flash")
        }
        ProviderKind::OpenAiCompatible => {
            BackendTarget::new(provider, "http://127.0.0.1:9/v1", "llama")
        }
    };
    target.api_key = Some(ApiKey::new("provider-secret"));
    target
}

/// Asserts the upstream request carries the tool definition and the tool result in the provider's own shape.
fn assert_upstream_request(provider: ProviderKind, request: &ChatRequest) {
    let upstream = build_chat_request(&target(provider), request).unwrap();
    let body: Value = serde_json::from_slice(upstream.body()).unwrap();
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
            let messages = body["messages"].as_array().unwrap();
            assert!(
                messages
                    .iter()
                    .any(|message| message["role"] == "tool" && message["content"] == "18C, sunny")
            );
            assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
            if request.is_stream() {
                assert_eq!(body["stream_options"]["include_usage"], true);
            }
        }
        ProviderKind::Anthropic => {
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["role"], "user");
            assert_eq!(last["content"][0]["type"], "tool_result");
            assert_eq!(last["content"][0]["content"], "18C, sunny");
            assert_eq!(last["content"][1]["text"], "And Rome?");
            assert_eq!(body["tools"][0]["input_schema"]["required"][0], "city");
            assert_eq!(body["system"], "Be terse.");
            assert_eq!(body["max_tokens"], 200);
        }
        ProviderKind::Gemini => {
            let last = body["contents"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["role"], "user");
            assert_eq!(
                last["parts"][0]["functionResponse"],
                serde_json::json!({"name": "get_weather", "response": {"result": "18C, sunny"}})
            );
            assert_eq!(
                body["tools"][0]["functionDeclarations"][0]["name"],
                "get_weather"
            );
            assert_eq!(body["generationConfig"]["maxOutputTokens"], 200);
        }
    }
}

fn response_fixture(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
            r#"{"id":"chatcmpl-abc","object":"chat.completion","created":1726012687,"model":"gpt-4o-2024-08-06",
              "choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,
                "tool_calls":[{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
                "logprobs":null,"finish_reason":"tool_calls","content_filter_results":{}}],
              "usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":64}}}"#
        }
        ProviderKind::Anthropic => {
            r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
              "content":[{"type":"text","text":"Let me check."},
                         {"type":"tool_use","id":"toolu_02","name":"get_weather","input":{"city":"Rome"}}],
              "stop_reason":"tool_use","stop_sequence":null,
              "usage":{"input_tokens":18,"output_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":64}}"#
        }
        ProviderKind::Gemini => {
            r#"{"candidates":[{"index":0,"finishReason":"STOP","content":{"role":"model","parts":[
                {"text":"Let me check."},{"functionCall":{"name":"get_weather","args":{"city":"Rome"}}}]}}],
              "usageMetadata":{"promptTokenCount":82,"candidatesTokenCount":17,"totalTokenCount":99,"cachedContentTokenCount":64},
              "modelVersion":"gemini-2.5-flash","responseId":"abc"}"#
        }
    }
}

fn stream_fixture(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
            super::openai::tests::STREAM
        }
        ProviderKind::Anthropic => super::anthropic::tests::STREAM,
        ProviderKind::Gemini => super::gemini::tests::STREAM,
    }
}

/// What a client reassembles from a response, whatever the surface.
#[derive(Debug, PartialEq)]
struct Seen {
    text: String,
    tool_name: String,
    tool_input: Value,
    tool_use_finish: bool,
    prompt_tokens: u64,
}

fn seen_openai(completion: &ChatCompletion) -> Seen {
    let choice = &completion.choices[0];
    let call = &choice.message.tool_calls.as_ref().unwrap()[0];
    let usage = completion.usage.as_ref().unwrap();
    Seen {
        text: choice.message.content.clone().unwrap_or_default(),
        tool_name: call.function.name.clone(),
        tool_input: serde_json::from_str(&call.function.arguments).unwrap(),
        tool_use_finish: choice.finish_reason.as_ref().map(|reason| reason.as_str())
            == Some("tool_calls"),
        prompt_tokens: usage.prompt_tokens,
    }
}

fn seen_anthropic(message: &anthropic::MessagesResponse) -> Seen {
    let mut text = String::new();
    let mut tool = None;
    for block in &message.content {
        match block {
            anthropic::ContentBlock::Text { text: part, .. } => text.push_str(part),
            anthropic::ContentBlock::ToolUse { name, input, .. } => {
                tool = Some((name.clone(), input.clone()))
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    let (tool_name, tool_input) = tool.unwrap();
    let usage = &message.usage;
    Seen {
        text,
        tool_name,
        tool_input,
        tool_use_finish: message.stop_reason == Some(anthropic::StopReason::ToolUse),
        prompt_tokens: usage.input_tokens
            + usage.cache_creation_input_tokens.unwrap_or(0)
            + usage.cache_read_input_tokens.unwrap_or(0),
    }
}

/// Reassembles an OpenAI SSE body the way the OpenAI SDK's stream helpers do.
fn seen_openai_stream(body: &[u8]) -> Seen {
    let mut text = String::new();
    let mut tool_name = String::new();
    let mut arguments = String::new();
    let mut finish = None;
    let mut prompt_tokens = 0;
    let mut done = false;
    SseParser::new()
        .feed(body, |event| {
            assert!(!done, "data after [DONE]");
            if event.data == "[DONE]" {
                done = true;
                return;
            }
            let chunk: ChatCompletionChunk = serde_json::from_str(event.data).unwrap();
            if let Some(usage) = &chunk.usage {
                prompt_tokens = usage.prompt_tokens;
            }
            for choice in &chunk.choices {
                text.push_str(choice.delta.content.as_deref().unwrap_or_default());
                for call in choice
                    .delta
                    .tool_calls
                    .iter()
                    .flatten()
                    .filter(|call| call.index == 0)
                {
                    let function = call.function.as_ref().unwrap();
                    if let Some(name) = &function.name {
                        tool_name.push_str(name);
                    }
                    arguments.push_str(function.arguments.as_deref().unwrap_or_default());
                }
                if let Some(reason) = &choice.finish_reason {
                    finish = Some(reason.as_str().to_owned());
                }
            }
        })
        .unwrap();
    assert!(done, "stream must end with [DONE]");
    Seen {
        text,
        tool_name,
        tool_input: serde_json::from_str(&arguments).unwrap(),
        tool_use_finish: finish.as_deref() == Some("tool_calls"),
        prompt_tokens,
    }
}

/// Reassembles an Anthropic SSE body the way the Anthropic SDK's message accumulator does.
fn seen_anthropic_stream(body: &[u8]) -> Seen {
    let mut events = Vec::new();
    SseParser::new()
        .feed(body, |event| {
            let parsed: anthropic::StreamEvent = serde_json::from_str(event.data).unwrap();
            events.push((event.event.to_owned(), parsed));
        })
        .unwrap();
    assert!(
        matches!(events.first(), Some((name, anthropic::StreamEvent::MessageStart { .. })) if name == "message_start")
    );
    assert!(
        matches!(events.last(), Some((name, anthropic::StreamEvent::MessageStop)) if name == "message_stop")
    );
    let mut text = String::new();
    // (block index, name, accumulated partial_json) per tool block.
    let mut tools: Vec<(u32, String, String)> = Vec::new();
    let mut stop = None;
    let mut prompt_tokens = 0;
    let mut open: Option<u32> = None;
    for (_, event) in events {
        match event {
            anthropic::StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                assert_eq!(open, None, "blocks must be sequential");
                open = Some(index);
                if let anthropic::ContentBlock::ToolUse { name, .. } = content_block {
                    tools.push((index, name, String::new()));
                }
            }
            anthropic::StreamEvent::ContentBlockDelta { index, delta } => {
                assert_eq!(open, Some(index));
                match delta {
                    anthropic::BlockDelta::TextDelta { text: part } => text.push_str(&part),
                    anthropic::BlockDelta::InputJsonDelta { partial_json } => {
                        let tool = tools
                            .iter_mut()
                            .find(|(block, ..)| *block == index)
                            .unwrap();
                        tool.2.push_str(&partial_json);
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            anthropic::StreamEvent::ContentBlockStop { index } => {
                assert_eq!(open.take(), Some(index));
            }
            anthropic::StreamEvent::MessageDelta { delta, usage } => {
                stop = delta.stop_reason;
                prompt_tokens = usage.input_tokens.unwrap_or(0)
                    + usage.cache_creation_input_tokens.unwrap_or(0)
                    + usage.cache_read_input_tokens.unwrap_or(0);
            }
            _ => {}
        }
    }
    let (_, tool_name, arguments) = tools.into_iter().next().unwrap();
    Seen {
        text,
        tool_name,
        tool_input: serde_json::from_str(&arguments).unwrap(),
        tool_use_finish: stop == Some(anthropic::StopReason::ToolUse),
        prompt_tokens,
    }
}

fn expected_text(provider: ProviderKind, stream: bool) -> &'static str {
    match (provider, stream) {
        (_, false) => "Let me check.",
        (ProviderKind::Anthropic, true) => "Checking \u{e9}t\u{e9} \u{1f326}.",
        (ProviderKind::Gemini, true) => "Checking \u{e9}\u{1f326}.",
        (_, true) => "Let me check \u{e9}\u{1f600}.",
    }
}

fn expected_prompt_tokens(provider: ProviderKind, stream: bool) -> u64 {
    match (provider, stream) {
        (_, false) => 82,
        (ProviderKind::Anthropic, true) => 572,
        (ProviderKind::Gemini, true) => 12,
        (_, true) => 82,
    }
}

#[test]
fn every_surface_and_provider_translates_tool_conversations_without_streaming() {
    for surface in [Surface::OpenAi, Surface::Anthropic] {
        for provider in PROVIDERS {
            let request = canonical(surface, false);
            assert_upstream_request(provider, &request);
            let completion =
                parse_chat_response(provider, response_fixture(provider).as_bytes(), 1).unwrap();
            let seen = match surface {
                Surface::OpenAi => {
                    seen_openai(&serde_json::from_slice(&openai_response(&completion)).unwrap())
                }
                Surface::Anthropic => seen_anthropic(
                    &serde_json::from_slice(&anthropic_response(completion)).unwrap(),
                ),
            };
            assert_eq!(
                seen,
                Seen {
                    text: expected_text(provider, false).to_owned(),
                    tool_name: "get_weather".into(),
                    tool_input: serde_json::json!({"city": "Rome"}),
                    tool_use_finish: true,
                    prompt_tokens: expected_prompt_tokens(provider, false),
                },
                "{surface:?} × {provider}"
            );
        }
    }
}

#[test]
fn every_surface_and_provider_translates_tool_conversations_when_streaming() {
    for surface in [Surface::OpenAi, Surface::Anthropic] {
        for provider in PROVIDERS {
            let request = canonical(surface, true);
            assert_upstream_request(provider, &request);
            // Odd piece sizes split SSE lines and multi-byte characters at varying positions.
            for piece in [1, 3, 5, 64] {
                let mut translator = StreamTranslator::new(provider, 1);
                let mut openai = OpenAiSseEncoder::new(true);
                let mut anthropic = AnthropicSseEncoder::new();
                let mut items = Vec::new();
                let mut out = Vec::new();
                for bytes in stream_fixture(provider).as_bytes().chunks(piece) {
                    translator.feed(bytes, &mut items);
                    for item in items.drain(..) {
                        match surface {
                            Surface::OpenAi => openai.encode(&item, &mut out),
                            Surface::Anthropic => anthropic.encode(&item, &mut out),
                        }
                    }
                }
                translator.finish(&mut items);
                assert!(translator.is_complete(), "{surface:?} × {provider}");
                for item in items.drain(..) {
                    match surface {
                        Surface::OpenAi => openai.encode(&item, &mut out),
                        Surface::Anthropic => anthropic.encode(&item, &mut out),
                    }
                }
                let seen = match surface {
                    Surface::OpenAi => {
                        openai.finish(&mut out);
                        seen_openai_stream(&out)
                    }
                    Surface::Anthropic => {
                        anthropic.finish(&mut out);
                        seen_anthropic_stream(&out)
                    }
                };
                assert_eq!(
                    seen,
                    Seen {
                        text: expected_text(provider, true).to_owned(),
                        tool_name: "get_weather".into(),
                        tool_input: serde_json::json!({"city": "Rome"}),
                        tool_use_finish: true,
                        prompt_tokens: expected_prompt_tokens(provider, true),
                    },
                    "{surface:?} × {provider}, pieces of {piece}"
                );
            }
        }
    }
}

#[test]
fn provider_errors_reach_either_surface_without_provider_text() {
    let bodies = [
        (
            ProviderKind::OpenAi,
            429,
            r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-SECRET","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        (
            ProviderKind::AzureOpenAi,
            429,
            r#"{"error":{"code":"429","message":"Requests to the deployment SECRET have exceeded rate limit. Please retry after 13 seconds."}}"#,
        ),
        (
            ProviderKind::Anthropic,
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"SECRET org limit"}}"#,
        ),
        (
            ProviderKind::Gemini,
            429,
            r#"{"error":{"code":429,"message":"SECRET quota","status":"RESOURCE_EXHAUSTED"}}"#,
        ),
        (
            ProviderKind::OpenAiCompatible,
            429,
            r#"{"object":"error","message":"SECRET","type":"RateLimitError","code":429}"#,
        ),
    ];
    for (provider, status, body) in bodies {
        let error = parse_error_response(provider, status, &HeaderMap::new(), body.as_bytes());
        assert!(error.is_retryable(), "{provider}");
        let client = error.client_error();
        assert_eq!((client.status, client.anthropic_status), (429, 429));
        let openai: Value = serde_json::from_slice(&client.openai_body()).unwrap();
        let anthropic: Value = serde_json::from_slice(&client.anthropic_body()).unwrap();
        assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
        for text in [openai.to_string(), anthropic.to_string(), error.to_string()] {
            assert!(!text.contains("SECRET"), "{provider}: {text}");
        }
    }
}

#[test]
fn upstream_requests_never_log_the_key() {
    for provider in PROVIDERS {
        let target = target(provider);
        assert!(!format!("{target:?}").contains("provider-secret"));
        let upstream = build_chat_request(&target, &canonical(Surface::OpenAi, false)).unwrap();
        let auth = upstream
            .headers()
            .iter()
            .find(|(_, value)| {
                value
                    .to_str()
                    .unwrap_or_default()
                    .contains("provider-secret")
            })
            .map(|(_, value)| value.is_sensitive());
        assert_eq!(auth, Some(true), "{provider}");
    }
}
