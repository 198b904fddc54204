//! Anthropic Messages upstream: canonical request → Messages request, Messages response/stream → canonical.
//!
//! Choices: system and developer messages are hoisted into `system` (joined by a blank line); consecutive
//! tool results and the user turn after them merge into one user message, results first; temperature is
//! clamped to Anthropic's 0–1; invalid tool-call `arguments` are sent as `{}`; `response_format: json_object`
//! is dropped (the prompt must ask for JSON anyway) and `json_schema` is refused.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{kind_for_status, retry_after_from_headers};
use super::media::{is_http_url, parse_data_url};
use super::sse::SseEvent;
use super::usage::from_anthropic;
use super::{
    Auth, BackendTarget, ChunkHeader, Progress, StreamItem, TranslateError, UpstreamError,
    UpstreamErrorKind, UpstreamRequest, json_post,
};
use crate::api::anthropic::{
    ANTHROPIC_VERSION, BlockDelta, Content, ContentBlock, ErrorResponse, Message, MessagesRequest,
    MessagesResponse, Metadata, StopReason, StreamEvent, Tool as AnthropicTool,
    ToolChoice as AnthropicToolChoice, Usage as AnthropicUsage,
};
use crate::api::json::JsonMap;
use crate::api::openai::{
    ChatCompletion, ChatRequest, Choice, ChunkChoice, ContentPart, Delta, FinishReason,
    FunctionCall, FunctionCallDelta, MessageContent, OBJECT_CHAT_COMPLETION, ResponseFormat,
    ResponseMessage, Role, ToolCall, ToolCallDelta, ToolChoice, ToolKind, Usage,
};

const PROVIDER: &str = "anthropic";

/// `POST {endpoint}/v1/messages` with `x-api-key` and `anthropic-version`.
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = serde_json::to_vec(&translate_request(target, request)?)?;
    json_post(
        target,
        target.url("/v1/messages"),
        Auth::Header("x-api-key", target.require_key()?),
        &[("anthropic-version", ANTHROPIC_VERSION)],
        body,
    )
}

// ---------------------------------------------------------------------------
// Request translation
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Request<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ToolOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataOut<'a>>,
}

#[derive(Debug, Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: Source<'a>,
    },
    Document {
        source: Source<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<Cow<'a, str>>,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// Tool-call arguments forwarded without re-parsing when they are a JSON object.
#[derive(Debug)]
enum ToolInput<'a> {
    Raw(&'a RawValue),
    Empty,
}

impl Serialize for ToolInput<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolInput::Raw(raw) => raw.serialize(serializer),
            ToolInput::Empty => serde_json::Map::new().serialize(serializer),
        }
    }
}

fn tool_input(arguments: &str) -> ToolInput<'_> {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().trim_start().starts_with('{') => ToolInput::Raw(raw),
        _ => {
            tracing::debug!("tool-call arguments are not a JSON object; sending {{}} to anthropic");
            ToolInput::Empty
        }
    }
}

#[derive(Debug, Serialize)]
struct ToolOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoiceOut<'a> {
    Auto {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    None,
}

#[derive(Debug, Serialize)]
struct MetadataOut<'a> {
    user_id: &'a str,
}

fn translate_request<'a>(
    target: &'a BackendTarget,
    request: &'a ChatRequest,
) -> Result<Request<'a>, TranslateError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::unsupported(PROVIDER, "n > 1"));
    }
    if let Some(ResponseFormat::JsonSchema { .. }) = request.response_format {
        return Err(TranslateError::unsupported(
            PROVIDER,
            "response_format json_schema",
        ));
    }
    let mut system = String::new();
    let mut turns: Vec<Turn<'a>> = Vec::with_capacity(request.messages.len());
    for (index, message) in request.messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                if let Some(content) = &message.content {
                    let text = content.joined_text();
                    if !text.is_empty() {
                        if !system.is_empty() {
                            system.push_str("\n\n");
                        }
                        system.push_str(&text);
                    }
                }
            }
            Role::User => {
                let blocks = match &message.content {
                    Some(content) => content_blocks(index, content)?,
                    None => Vec::new(),
                };
                push_turn(&mut turns, "user", blocks);
            }
            Role::Assistant => {
                let mut blocks = match &message.content {
                    Some(content) => content_blocks(index, content)?,
                    None => Vec::new(),
                };
                for call in message.tool_calls.iter().flatten() {
                    blocks.push(Block::ToolUse {
                        id: &call.id,
                        name: &call.function.name,
                        input: tool_input(&call.function.arguments),
                    });
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                let text = message
                    .content
                    .as_ref()
                    .map(|content| match content {
                        MessageContent::Text(text) => Cow::Borrowed(text.as_str()),
                        parts => Cow::Owned(parts.joined_text()),
                    })
                    .filter(|text| !text.is_empty());
                let tool_use_id = message.tool_call_id.as_deref().unwrap_or_default();
                push_turn(
                    &mut turns,
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id,
                        content: text,
                    }],
                );
            }
            Role::Function => {
                return Err(TranslateError::unsupported(
                    PROVIDER,
                    "messages with role `function`",
                ));
            }
        }
    }

    let tools: Option<Vec<ToolOut<'a>>> = request
        .tools
        .as_ref()
        .filter(|tools| !tools.is_empty())
        .map(|tools| {
            tools
                .iter()
                .map(|tool| ToolOut {
                    name: &tool.function.name,
                    description: tool.function.description.as_deref(),
                    input_schema: tool.function.parameters.as_ref().map_or_else(
                        || Cow::Owned(serde_json::json!({"type": "object", "properties": {}})),
                        Cow::Borrowed,
                    ),
                })
                .collect()
        });
    let disable_parallel_tool_use = request.parallel_tool_calls == Some(false);
    let tool_choice = if tools.is_none() {
        None
    } else {
        match &request.tool_choice {
            None if disable_parallel_tool_use => Some(ToolChoiceOut::Auto {
                disable_parallel_tool_use,
            }),
            None => None,
            Some(ToolChoice::Auto) => Some(ToolChoiceOut::Auto {
                disable_parallel_tool_use,
            }),
            Some(ToolChoice::Required) => Some(ToolChoiceOut::Any {
                disable_parallel_tool_use,
            }),
            Some(ToolChoice::Function { name }) => Some(ToolChoiceOut::Tool {
                name,
                disable_parallel_tool_use,
            }),
            Some(ToolChoice::None) => Some(ToolChoiceOut::None),
        }
    };

    Ok(Request {
        model: &target.model,
        max_tokens: request
            .max_output_tokens()
            .unwrap_or(target.default_max_tokens),
        system: (!system.is_empty()).then_some(system),
        messages: turns,
        temperature: request.temperature.map(|value| value.clamp(0.0, 1.0)),
        top_p: request.top_p,
        top_k: request.top_k(),
        stop_sequences: request.stop.as_ref().map(|stop| stop.0.as_slice()),
        stream: request.is_stream(),
        tools,
        tool_choice,
        metadata: request
            .user
            .as_deref()
            .map(|user_id| MetadataOut { user_id }),
    })
}

/// Anthropic merges consecutive same-role turns itself, but merging here keeps tool results first in one message.
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn {
            role,
            content: blocks,
        }),
    }
}

fn content_blocks(
    index: usize,
    content: &MessageContent,
) -> Result<Vec<Block<'_>>, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) if text.is_empty() => return Ok(Vec::new()),
        MessageContent::Text(text) => {
            return Ok(vec![Block::Text {
                text: Cow::Borrowed(text),
            }]);
        }
        MessageContent::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (position, part) in parts.iter().enumerate() {
        let block = match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if text.is_empty() {
                    continue;
                }
                Block::Text {
                    text: Cow::Borrowed(text),
                }
            }
            ContentPart::ImageUrl { image_url } => Block::Image {
                source: media_source(&image_url.url).ok_or_else(|| {
                    TranslateError::invalid(
                        format!("messages[{index}].content[{position}].image_url.url"),
                        "must be an http(s) URL or a base64 data URL",
                    )
                })?,
            },
            ContentPart::File { file } => {
                let data = file.file_data.as_deref().and_then(parse_data_url);
                match data {
                    Some(data) if data.media_type == "application/pdf" => Block::Document {
                        source: Source::Base64 {
                            media_type: data.media_type,
                            data: data.base64,
                        },
                    },
                    Some(data) => {
                        return Err(TranslateError::unsupported(
                            PROVIDER,
                            format!("file parts of type {}", data.media_type),
                        ));
                    }
                    None => {
                        return Err(TranslateError::unsupported(
                            PROVIDER,
                            "file parts without inline file_data",
                        ));
                    }
                }
            }
            other => {
                return Err(TranslateError::unsupported(
                    PROVIDER,
                    format!("`{}` content parts", other.kind()),
                ));
            }
        };
        blocks.push(block);
    }
    Ok(blocks)
}

fn media_source(url: &str) -> Option<Source<'_>> {
    if let Some(data) = parse_data_url(url) {
        return Some(Source::Base64 {
            media_type: data.media_type,
            data: data.base64,
        });
    }
    is_http_url(url).then_some(Source::Url { url })
}

// ---------------------------------------------------------------------------
// Responses and errors
// ---------------------------------------------------------------------------

/// Maps a stop reason to OpenAI's finish reason (`pause_turn` → `stop`, context exhaustion → `length`).
pub fn finish_reason(stop: &StopReason) -> FinishReason {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => {
            FinishReason::Stop
        }
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::Refusal => FinishReason::ContentFilter,
        StopReason::Other(_) => FinishReason::Stop,
    }
}

pub(crate) fn parse_chat_response(
    body: &[u8],
    created: u64,
) -> Result<ChatCompletion, UpstreamError> {
    match serde_json::from_slice::<MessagesResponse>(body) {
        Ok(message) => Ok(completion_from_message(message, created)),
        Err(error) => match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(envelope) => Err(classified(200, envelope)),
            Err(_) => Err(UpstreamError::protocol(
                200,
                format!("invalid messages response body: {error}"),
            )),
        },
    }
}

/// Converts a Messages response into a canonical completion (thinking text goes to `reasoning_content`).
pub fn completion_from_message(message: MessagesResponse, created: u64) -> ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ContentBlock::Text { text: part, .. } => text.push_str(&part),
            ContentBlock::Thinking { thinking, .. } => reasoning.push_str(&thinking),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => tool_calls.push(ToolCall {
                id,
                kind: ToolKind::Function,
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            _ => {}
        }
    }
    let mut extra = serde_json::Map::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".to_owned(), Value::String(reasoning));
    }
    let usage = &message.usage;
    ChatCompletion {
        id: message.id,
        object: OBJECT_CHAT_COMPLETION.to_owned(),
        created,
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: Role::Assistant,
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                extra,
            },
            finish_reason: Some(
                message
                    .stop_reason
                    .as_ref()
                    .map_or(FinishReason::Stop, finish_reason),
            ),
            logprobs: None,
            extra: serde_json::Map::new(),
        }],
        usage: Some(from_anthropic(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_input_tokens.unwrap_or(0),
            usage.cache_read_input_tokens.unwrap_or(0),
        )),
        system_fingerprint: None,
        service_tier: None,
        extra: serde_json::Map::new(),
    }
}

pub(crate) fn parse_error(status: u16, headers: &http::HeaderMap, body: &[u8]) -> UpstreamError {
    let error = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(envelope) => classified(status, envelope),
        Err(_) => UpstreamError::new(
            kind_for_status(status),
            status,
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    error.with_retry_after(retry_after_from_headers(headers))
}

fn classified(status: u16, envelope: ErrorResponse) -> UpstreamError {
    let detail = envelope.error;
    let kind = classify(status, &detail.kind, &detail.message);
    UpstreamError::new(kind, status, detail.message).with_code(Some(detail.kind))
}

fn classify(status: u16, kind: &str, message: &str) -> UpstreamErrorKind {
    match kind {
        "rate_limit_error" => UpstreamErrorKind::RateLimited,
        "overloaded_error" => UpstreamErrorKind::Overloaded,
        "authentication_error" | "permission_error" => UpstreamErrorKind::Auth,
        "not_found_error" => UpstreamErrorKind::NotFound,
        "billing_error" => UpstreamErrorKind::QuotaExceeded,
        "timeout_error" => UpstreamErrorKind::Timeout,
        "api_error" => UpstreamErrorKind::Server,
        "request_too_large" => UpstreamErrorKind::BadRequest,
        "invalid_request_error" => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("prompt is too long") || lower.contains("context window") {
                UpstreamErrorKind::ContextLengthExceeded
            } else if lower.contains("credit balance") {
                UpstreamErrorKind::QuotaExceeded
            } else {
                UpstreamErrorKind::BadRequest
            }
        }
        _ if status == 200 => UpstreamErrorKind::Server,
        _ => kind_for_status(status),
    }
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// Anthropic named events → canonical chunks. Tool calls are numbered among tool blocks only.
#[derive(Debug)]
pub(crate) struct StreamDecoder {
    header: ChunkHeader,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    /// (Anthropic block index, OpenAI tool-call index) of the tool blocks seen so far.
    tool_blocks: Vec<(u32, u32)>,
}

impl StreamDecoder {
    pub(crate) fn new(created: u64) -> Self {
        Self {
            header: ChunkHeader {
                created,
                ..ChunkHeader::default()
            },
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            tool_blocks: Vec::new(),
        }
    }

    fn push(&self, out: &mut Vec<StreamItem>, delta: Delta, finish_reason: Option<FinishReason>) {
        out.push(StreamItem::Chunk(self.header.chunk(
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            None,
        )));
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(index, _)| *index == block)
            .map(|(_, tool)| *tool)
    }

    pub(crate) fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<StreamItem>) -> Progress {
        if event.event == "ping" {
            return Progress::Continue;
        }
        let parsed = match serde_json::from_str::<StreamEvent>(event.data) {
            Ok(parsed) => parsed,
            Err(error) => {
                if is_known_event(event.event) || event.event == "message" {
                    out.push(StreamItem::Error(UpstreamError::protocol(
                        200,
                        format!("invalid {} event: {error}", event.event),
                    )));
                    return Progress::Failed;
                }
                // Event types newer than this gateway are skipped, as Anthropic's versioning policy asks.
                return Progress::Continue;
            }
        };
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.header.id = message.id;
                self.header.model = message.model;
                let usage = message.usage;
                self.input_tokens = usage.input_tokens;
                self.output_tokens = usage.output_tokens;
                self.cache_creation_input_tokens = usage.cache_creation_input_tokens.unwrap_or(0);
                self.cache_read_input_tokens = usage.cache_read_input_tokens.unwrap_or(0);
                self.push(
                    out,
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                );
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::ToolUse { id, name, .. } => {
                    let tool = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                    self.tool_blocks.push((index, tool));
                    self.push(
                        out,
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: tool,
                                id: Some(id),
                                kind: Some(ToolKind::Function),
                                function: Some(FunctionCallDelta {
                                    name: Some(name),
                                    arguments: Some(String::new()),
                                }),
                            }]),
                            ..Delta::default()
                        },
                        None,
                    );
                }
                ContentBlock::Text { text, .. } if !text.is_empty() => {
                    self.push(out, content_delta(text), None);
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    self.push(out, content_delta(text), None);
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    if let Some(tool) = self.tool_index(index) {
                        self.push(
                            out,
                            Delta {
                                tool_calls: Some(vec![ToolCallDelta {
                                    index: tool,
                                    id: None,
                                    kind: None,
                                    function: Some(FunctionCallDelta {
                                        name: None,
                                        arguments: Some(partial_json),
                                    }),
                                }]),
                                ..Delta::default()
                            },
                            None,
                        );
                    }
                }
                BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    self.push(
                        out,
                        Delta {
                            reasoning_content: Some(thinking),
                            ..Delta::default()
                        },
                        None,
                    );
                }
                _ => {}
            },
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping => {}
            StreamEvent::MessageDelta { delta, usage } => {
                // Counts are cumulative: replace, never add.
                self.output_tokens = usage.output_tokens;
                if let Some(input) = usage.input_tokens {
                    self.input_tokens = input;
                }
                if let Some(created) = usage.cache_creation_input_tokens {
                    self.cache_creation_input_tokens = created;
                }
                if let Some(read) = usage.cache_read_input_tokens {
                    self.cache_read_input_tokens = read;
                }
                if let Some(stop) = &delta.stop_reason {
                    self.push(out, Delta::default(), Some(finish_reason(stop)));
                }
            }
            StreamEvent::MessageStop => {
                let usage = from_anthropic(
                    self.input_tokens,
                    self.output_tokens,
                    self.cache_creation_input_tokens,
                    self.cache_read_input_tokens,
                );
                out.push(StreamItem::Chunk(
                    self.header.chunk(Vec::new(), Some(usage)),
                ));
                return Progress::Complete;
            }
            StreamEvent::Error { error } => {
                let kind = classify(200, &error.kind, &error.message);
                out.push(StreamItem::Error(
                    UpstreamError::new(kind, 200, error.message).with_code(Some(error.kind)),
                ));
                return Progress::Failed;
            }
        }
        Progress::Continue
    }

    pub(crate) fn on_eof(&mut self, out: &mut Vec<StreamItem>) -> Progress {
        out.push(StreamItem::Error(UpstreamError::protocol(
            200,
            "stream ended before message_stop",
        )));
        Progress::Failed
    }
}

fn content_delta(text: String) -> Delta {
    Delta {
        content: Some(text),
        ..Delta::default()
    }
}

fn is_known_event(name: &str) -> bool {
    matches!(
        name,
        "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop"
            | "error"
    )
}

// ---------------------------------------------------------------------------
// Native pass-through (Anthropic surface → Anthropic provider)
// ---------------------------------------------------------------------------

/// The client's Messages request with only `model` replaced: nothing is lost (thinking blocks with their
/// signatures, `cache_control`, server tools, `thinking`, `service_tier`, …).
#[derive(Serialize)]
struct NativeRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [AnthropicTool]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a AnthropicToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Metadata>,
    #[serde(flatten)]
    extra: &'a JsonMap,
}

/// Forwards a `/v1/messages` request to an Anthropic backend untranslated. The caller may add the client's
/// `anthropic-beta` header to the returned request.
pub fn build_native_request(
    target: &BackendTarget,
    request: &MessagesRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = serde_json::to_vec(&NativeRequest {
        model: &target.model,
        max_tokens: request.max_tokens,
        messages: &request.messages,
        system: request.system.as_ref(),
        stop_sequences: request.stop_sequences.as_deref(),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stream: request.stream,
        tools: request.tools.as_deref(),
        tool_choice: request.tool_choice.as_ref(),
        metadata: request.metadata.as_ref(),
        extra: &request.extra,
    })?;
    json_post(
        target,
        target.url("/v1/messages"),
        Auth::Header("x-api-key", target.require_key()?),
        &[("anthropic-version", ANTHROPIC_VERSION)],
        body,
    )
}

/// Reads the usage of a successful native response; the body itself goes to the client unchanged.
pub fn parse_native_response(body: &[u8]) -> Result<Usage, UpstreamError> {
    #[derive(serde::Deserialize)]
    struct UsageOnly {
        usage: AnthropicUsage,
    }
    match serde_json::from_slice::<UsageOnly>(body) {
        Ok(parsed) => Ok(canonical_usage(&parsed.usage)),
        Err(error) => Err(match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(envelope) => classified(200, envelope),
            Err(_) => {
                UpstreamError::protocol(200, format!("invalid messages response body: {error}"))
            }
        }),
    }
}

fn canonical_usage(usage: &AnthropicUsage) -> Usage {
    from_anthropic(
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens.unwrap_or(0),
        usage.cache_read_input_tokens.unwrap_or(0),
    )
}

/// Relays a native Anthropic stream to an Anthropic client event by event, reading usage on the way.
///
/// Events are re-framed verbatim (only `message_start` and `message_delta` are parsed); an upstream `error`
/// event is replaced by the gateway's own error event so provider text never reaches the client.
#[derive(Debug)]
pub struct NativeStream {
    parser: super::sse::SseParser,
    usage: AnthropicUsage,
    progress: Progress,
    error: Option<UpstreamError>,
}

impl Default for NativeStream {
    fn default() -> Self {
        Self::new()
    }
}

impl NativeStream {
    /// A relay at the start of a stream.
    pub fn new() -> Self {
        Self {
            parser: super::sse::SseParser::new(),
            usage: AnthropicUsage::default(),
            progress: Progress::Continue,
            error: None,
        }
    }

    /// Feeds upstream bytes and appends the events to send to `out`. Returns the upstream's error, once,
    /// when it reported one (its sanitized `event: error` is already in `out`).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Option<UpstreamError> {
        if self.progress != Progress::Continue {
            return None;
        }
        let Self {
            parser,
            usage,
            progress,
            error,
        } = self;
        let parsed = parser.feed(bytes, |event| {
            relay_event(event, usage, progress, error, out)
        });
        if let Err(too_large) = parsed {
            self.fail(UpstreamError::protocol(200, too_large.to_string()), out);
        }
        self.error.take()
    }

    /// Signals the end of the upstream body; a stream cut before `message_stop` yields an error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Option<UpstreamError> {
        if self.progress != Progress::Continue {
            return None;
        }
        let Self {
            parser,
            usage,
            progress,
            error,
        } = self;
        let parsed = parser.finish(|event| relay_event(event, usage, progress, error, out));
        if let Err(too_large) = parsed {
            self.fail(UpstreamError::protocol(200, too_large.to_string()), out);
        } else if self.progress == Progress::Continue {
            self.fail(
                UpstreamError::protocol(200, "stream ended before message_stop"),
                out,
            );
        }
        self.error.take()
    }

    /// Usage so far (final once the stream completed).
    pub fn usage(&self) -> Usage {
        canonical_usage(&self.usage)
    }

    /// Whether `message_stop` was relayed.
    pub fn is_complete(&self) -> bool {
        self.progress == Progress::Complete
    }

    fn fail(&mut self, error: UpstreamError, out: &mut Vec<u8>) {
        write_client_error(&error, out);
        self.progress = Progress::Failed;
        self.error = Some(error);
    }
}

fn write_client_error(error: &UpstreamError, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: error\ndata: ");
    out.extend_from_slice(&error.client_error().anthropic_body());
    out.extend_from_slice(b"\n\n");
}

fn relay_event(
    event: SseEvent<'_>,
    usage: &mut AnthropicUsage,
    progress: &mut Progress,
    error: &mut Option<UpstreamError>,
    out: &mut Vec<u8>,
) {
    if *progress != Progress::Continue {
        return;
    }
    match event.event {
        "error" => {
            let failure = match serde_json::from_str::<StreamEvent>(event.data) {
                Ok(StreamEvent::Error { error: detail }) => {
                    let kind = classify(200, &detail.kind, &detail.message);
                    UpstreamError::new(kind, 200, detail.message).with_code(Some(detail.kind))
                }
                _ => UpstreamError::protocol(200, "unreadable error event"),
            };
            write_client_error(&failure, out);
            *progress = Progress::Failed;
            *error = Some(failure);
            return;
        }
        "message_start" | "message_delta" => {
            match serde_json::from_str::<StreamEvent>(event.data) {
                Ok(StreamEvent::MessageStart { message }) => *usage = message.usage,
                Ok(StreamEvent::MessageDelta { usage: delta, .. }) => {
                    // Cumulative counts: replace, never add.
                    usage.output_tokens = delta.output_tokens;
                    if let Some(input) = delta.input_tokens {
                        usage.input_tokens = input;
                    }
                    if delta.cache_creation_input_tokens.is_some() {
                        usage.cache_creation_input_tokens = delta.cache_creation_input_tokens;
                    }
                    if delta.cache_read_input_tokens.is_some() {
                        usage.cache_read_input_tokens = delta.cache_read_input_tokens;
                    }
                }
                _ => {
                    let failure =
                        UpstreamError::protocol(200, format!("invalid {} event", event.event));
                    write_client_error(&failure, out);
                    *progress = Progress::Failed;
                    *error = Some(failure);
                    return;
                }
            }
        }
        "message_stop" => *progress = Progress::Complete,
        _ => {}
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(event.data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::openai::ChatCompletionChunk;
    use crate::providers::openai::tests::run;
    use crate::providers::{
        ApiKey, ProviderKind, build_chat_request as build, parse_error_response,
    };
    use http::HeaderMap;
    use pretty_assertions::assert_eq;

    fn target() -> BackendTarget {
        BackendTarget::new(
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
            "claude-sonnet-4-5",
        )
        .with_api_key(ApiKey::new("sk-ant-secret"))
    }

    const REQUEST: &str = r#"{
      "model": "alias",
      "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [
          {"type": "text", "text": "Weather in Paris?"},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "auto"}},
          {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
          {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "not json"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Thanks"}
      ],
      "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time"}}
      ],
      "tool_choice": "required", "parallel_tool_calls": false,
      "temperature": 1.6, "top_p": 0.9, "top_k": 40, "stop": "END", "user": "u-123",
      "stream": true, "stream_options": {"include_usage": true}
    }"#;

    #[test]
    fn request_translates_roles_tools_images_and_defaults() {
        let request: ChatRequest = serde_json::from_str(REQUEST).unwrap();
        let upstream = build(&target(), &request).unwrap();
        assert_eq!(upstream.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(upstream.headers()["x-api-key"], "sk-ant-secret");
        assert!(upstream.headers()["x-api-key"].is_sensitive());
        assert_eq!(upstream.headers()["anthropic-version"], "2023-06-01");
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        let expected = serde_json::json!({
          "model": "claude-sonnet-4-5",
          "max_tokens": 4096,
          "system": "Be terse.\n\nAnswer in French.",
          "messages": [
            {"role": "user", "content": [
              {"type": "text", "text": "Weather in Paris?"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
              {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
            ]},
            {"role": "assistant", "content": [
              {"type": "text", "text": "Checking."},
              {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
              {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
              {"type": "tool_result", "tool_use_id": "call_2", "content": "12:00"},
              {"type": "text", "text": "Thanks"}
            ]}
          ],
          "temperature": 1.0, "top_p": 0.9, "top_k": 40,
          "stop_sequences": ["END"],
          "stream": true,
          "tools": [
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
          ],
          "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
          "metadata": {"user_id": "u-123"}
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn untranslatable_requests_are_refused_with_a_reason() {
        let cases = [
            (
                r#"{"model":"a","n":2,"messages":[{"role":"user","content":"x"}]}"#,
                "n > 1 is not supported by provider anthropic",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}"#,
                "`input_audio` content parts is not supported by provider anthropic",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#,
                "messages[0].content[0].image_url.url: must be an http(s) URL or a base64 data URL",
            ),
        ];
        for (body, expected) in cases {
            let request: ChatRequest = serde_json::from_str(body).unwrap();
            let error = build(&target(), &request).unwrap_err();
            assert_eq!(error.to_string(), expected);
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn response_with_tool_use_and_cache_usage() {
        let body = br#"{"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
          "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                      {"type": "text", "text": "Let me check Rome."},
                      {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}}],
          "stop_reason": "tool_use", "stop_sequence": null,
          "usage": {"input_tokens": 50, "output_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 200}}"#;
        let completion = parse_chat_response(body, 7).unwrap();
        assert_eq!(completion.created, 7);
        let choice = &completion.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            choice.message.content.as_deref(),
            Some("Let me check Rome.")
        );
        assert_eq!(choice.message.extra["reasoning_content"], "hmm");
        let call = &choice.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.name.as_str()),
            ("toolu_02", "get_weather")
        );
        assert_eq!(call.function.arguments, r#"{"city":"Rome"}"#);
        let usage = completion.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens()
            ),
            (250, 30, 200)
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let cases = [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Stop),
            ("model_context_window_exceeded", FinishReason::Length),
            ("something_new", FinishReason::Stop),
        ];
        for (stop, expected) in cases {
            assert_eq!(
                finish_reason(&StopReason::from_wire(stop)),
                expected,
                "{stop}"
            );
        }
    }

    #[test]
    fn errors_are_classified() {
        let cases: &[(u16, &str, UpstreamErrorKind)] = &[
            (
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"},"request_id":"req_1"}"#,
                UpstreamErrorKind::RateLimited,
            ),
            (
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                UpstreamErrorKind::Overloaded,
            ),
            (
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                UpstreamErrorKind::Auth,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
                UpstreamErrorKind::ContextLengthExceeded,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low"}}"#,
                UpstreamErrorKind::QuotaExceeded,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: text content blocks must be non-empty"}}"#,
                UpstreamErrorKind::BadRequest,
            ),
            (
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#,
                UpstreamErrorKind::NotFound,
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"Internal"}}"#,
                UpstreamErrorKind::Server,
            ),
            (
                504,
                r#"{"type":"error","error":{"type":"timeout_error","message":"Timeout"}}"#,
                UpstreamErrorKind::Timeout,
            ),
            (502, "bad gateway", UpstreamErrorKind::Server),
        ];
        for (status, body, expected) in cases {
            let error = parse_error_response(
                ProviderKind::Anthropic,
                *status,
                &HeaderMap::new(),
                body.as_bytes(),
            );
            assert_eq!(error.kind, *expected, "{body}");
        }
    }

    pub(crate) const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":100}}}\n\n",
        "event: ping\n",
        "data: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking \u{e9}t\u{e9} \u{1f326}.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Rome\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":31}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn chunks(items: &[StreamItem]) -> Vec<&ChatCompletionChunk> {
        items
            .iter()
            .map(|item| match item {
                StreamItem::Chunk(chunk) => chunk,
                StreamItem::Error(error) => panic!("unexpected error {error:?}"),
            })
            .collect()
    }

    #[test]
    fn stream_translates_text_tool_calls_finish_and_usage_at_every_split() {
        let bytes = STREAM.as_bytes();
        let (reference, translator) = run(ProviderKind::Anthropic, &[bytes]);
        assert!(translator.is_complete());
        let chunks = chunks(&reference);
        assert_eq!(chunks.len(), 7);
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk.id == "msg_01" && chunk.created == 1_700_000_000)
        );
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(
            chunks[1].choices[0].delta.content.as_deref(),
            Some("Checking \u{e9}t\u{e9} \u{1f326}.")
        );
        let start = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!((start.index, start.id.as_deref()), (0, Some("toolu_02")));
        assert_eq!(
            start.function.as_ref().unwrap().name.as_deref(),
            Some("get_weather")
        );
        let arguments: String = chunks[3..5]
            .iter()
            .map(|chunk| {
                chunk.choices[0].delta.tool_calls.as_ref().unwrap()[0]
                    .function
                    .as_ref()
                    .unwrap()
                    .arguments
                    .clone()
                    .unwrap()
            })
            .collect();
        assert_eq!(arguments, "{\"city\": \"Rome\"}");
        assert_eq!(
            chunks[5].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        assert!(chunks[6].choices.is_empty());
        let usage = translator.usage().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens()
            ),
            (572, 31, 100)
        );
        for split in 1..bytes.len() {
            let (items, _) = run(ProviderKind::Anthropic, &[&bytes[..split], &bytes[split..]]);
            assert_eq!(items, reference, "split at {split}");
        }
        // Byte-at-a-time feeding splits every multi-byte character.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(ProviderKind::Anthropic, &singles).0, reference);
    }

    #[test]
    fn error_events_are_surfaced_first_or_later() {
        let error_event = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (items, translator) = run(ProviderKind::Anthropic, &[error_event.as_bytes()]);
        assert!(translator.is_failed());
        assert!(
            matches!(&items[..], [StreamItem::Error(error)] if error.kind == UpstreamErrorKind::Overloaded)
        );

        let cut = STREAM
            .find("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1")
            .unwrap();
        let later = format!("{}{error_event}", &STREAM[..cut]);
        let (items, _) = run(ProviderKind::Anthropic, &[later.as_bytes()]);
        assert_eq!(items.len(), 3);
        assert!(
            matches!(items.last(), Some(StreamItem::Error(error)) if error.kind == UpstreamErrorKind::Overloaded)
        );

        let (items, translator) = run(ProviderKind::Anthropic, &[&STREAM.as_bytes()[..cut]]);
        assert!(translator.is_failed());
        assert!(
            matches!(items.last(), Some(StreamItem::Error(error)) if error.kind == UpstreamErrorKind::Protocol)
        );
    }

    #[test]
    fn unknown_events_are_skipped() {
        let stream = STREAM.replace(
            "event: ping\n",
            "event: future_event\ndata: {\"type\":\"future_event\",\"x\":1}\n\nevent: ping\n",
        );
        let (items, translator) = run(ProviderKind::Anthropic, &[stream.as_bytes()]);
        assert!(translator.is_complete());
        assert_eq!(items.len(), 7);
    }
    #[test]
    fn native_requests_keep_everything_but_the_model() {
        let body = crate::api::anthropic::tests::FULL_REQUEST;
        let request = crate::api::parse_messages_request(body.as_bytes()).unwrap();
        let upstream = build_native_request(&target(), &request).unwrap();
        assert_eq!(upstream.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(upstream.headers()["anthropic-version"], "2023-06-01");
        let sent: Value = serde_json::from_slice(upstream.body()).unwrap();
        let mut expected: Value = serde_json::from_str(body).unwrap();
        expected["model"] = "claude-sonnet-4-5".into();
        assert_eq!(sent, expected);
    }

    #[test]
    fn native_responses_yield_usage() {
        let usage = parse_native_response(
            br#"{"id":"msg_01","type":"message","role":"assistant","model":"m","content":[{"type":"server_tool_use","id":"s","name":"web_search","input":{}}],
                "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":30,"cache_creation_input_tokens":10,"cache_read_input_tokens":200}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens()
            ),
            (260, 30, 200)
        );
        let error = parse_native_response(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap_err();
        assert_eq!(error.kind, UpstreamErrorKind::Overloaded);
    }

    fn run_native(stream: &[u8], piece: usize) -> (Vec<u8>, NativeStream, Vec<UpstreamError>) {
        let mut relay = NativeStream::new();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for bytes in stream.chunks(piece) {
            errors.extend(relay.feed(bytes, &mut out));
        }
        errors.extend(relay.finish(&mut out));
        (out, relay, errors)
    }

    fn events(body: &[u8]) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        crate::providers::sse::SseParser::new()
            .feed(body, |event| {
                events.push((
                    event.event.to_owned(),
                    serde_json::from_str(event.data).unwrap(),
                ))
            })
            .unwrap();
        events
    }

    #[test]
    fn native_streams_are_relayed_event_for_event_with_usage() {
        let with_thinking = STREAM.replace(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0",
        );
        for piece in [1, 7, 4096] {
            let (out, relay, errors) = run_native(with_thinking.as_bytes(), piece);
            assert!(errors.is_empty());
            assert!(relay.is_complete());
            assert_eq!(events(&out), events(with_thinking.as_bytes()));
            let usage = relay.usage();
            assert_eq!(
                (
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens()
                ),
                (572, 31, 100)
            );
        }
    }

    #[test]
    fn native_stream_errors_are_sanitized_and_cuts_reported() {
        let error_event = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"SECRET detail\"}}\n\n";
        let cut = STREAM
            .find("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1")
            .unwrap();
        let (out, relay, errors) =
            run_native(format!("{}{error_event}", &STREAM[..cut]).as_bytes(), 5);
        assert!(!relay.is_complete());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, UpstreamErrorKind::Overloaded);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("SECRET"));
        let (name, last) = events(text.as_bytes()).pop().unwrap();
        assert_eq!(
            (name.as_str(), &last["error"]["type"]),
            ("error", &Value::from("overloaded_error"))
        );

        let (out, _, errors) = run_native(&STREAM.as_bytes()[..cut], 5);
        assert_eq!(errors[0].kind, UpstreamErrorKind::Protocol);
        assert_eq!(events(&out).pop().unwrap().0, "error");
    }
}
