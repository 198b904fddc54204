//! Google Gemini (`v1beta` generateContent, `alt=sse` streams, batchEmbedContents) upstream.
//!
//! Choices: system/developer text goes to `systemInstruction`; consecutive same-role contents are merged
//! (Gemini requires alternation); a tool message becomes a `functionResponse` named after the matching earlier
//! tool call, with non-object results wrapped as `{"result": …}`. Gemini sends no tool-call ids, so ids are
//! synthesized; a call's `thoughtSignature` is carried inside its id (`<id>-ts-<base64url>`) so it returns
//! verbatim with the history. `STOP` with function calls becomes `tool_calls`; `MALFORMED_FUNCTION_CALL`,
//! `UNEXPECTED_TOOL_CALL` and `TOO_MANY_TOOL_CALLS` become retryable upstream errors; a blocked prompt is a
//! content-filter error. JSON-Schema keywords Gemini rejects are stripped from schemas.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{kind_for_status, parse_proto_duration, retry_after_from_headers};
use super::media::parse_data_url;
use super::sse::SseEvent;
use super::usage::from_gemini;
use super::{
    Auth, BackendTarget, ChunkHeader, EmbeddingsOutcome, Progress, StreamItem, TranslateError,
    UpstreamError, UpstreamErrorKind, UpstreamRequest, json_post,
};
use crate::api::openai::{
    ChatCompletion, ChatRequest, Choice, ChunkChoice, ContentPart, Delta, Embedding,
    EmbeddingInput, EmbeddingVector, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage,
    EncodingFormat, FinishReason, FunctionCall, FunctionCallDelta, MessageContent,
    OBJECT_CHAT_COMPLETION, ResponseFormat, ResponseMessage, Role, ToolCall, ToolCallDelta,
    ToolChoice, ToolKind, Usage,
};

const PROVIDER: &str = "gemini";
/// Separates a synthesized tool-call id from the thought signature it carries.
const SIGNATURE_MARKER: &str = "-ts-";
/// JSON-Schema keywords Gemini's OpenAPI-subset schemas reject.
const UNSUPPORTED_SCHEMA_KEYWORDS: [&str; 4] =
    ["$schema", "additionalProperties", "$id", "$comment"];

/// `POST {endpoint}/v1beta/models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`).
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = serde_json::to_vec(&translate_request(request)?)?;
    let operation = if request.is_stream() {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    json_post(
        target,
        target.url(&format!(
            "/v1beta/models/{}{operation}",
            model_id(&target.model)
        )),
        Auth::Header("x-goog-api-key", target.require_key()?),
        &[],
        body,
    )
}

fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

// ---------------------------------------------------------------------------
// Request translation
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[Tools<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    generation_config: GenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part<'a>>,
}

/// A Gemini part: exactly one data field, plus an optional thought signature.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<FunctionResponseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: Cow<'a, str>,
    data: &'a str,
}

#[derive(Debug, Serialize)]
struct FunctionCallOut<'a> {
    name: &'a str,
    args: JsonObject<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionResponseOut<'a> {
    name: &'a str,
    response: JsonObject<'a>,
}

/// A JSON object forwarded verbatim when the text already is one, otherwise wrapped as `{"result": text}`.
#[derive(Debug)]
enum JsonObject<'a> {
    Raw(&'a RawValue),
    Parsed(Value),
    Wrapped(Cow<'a, str>),
    Empty,
}

impl<'a> JsonObject<'a> {
    fn from_text(text: Cow<'a, str>) -> Self {
        match text {
            Cow::Borrowed(borrowed) => {
                raw_object(borrowed).map_or(JsonObject::Wrapped(text), JsonObject::Raw)
            }
            // Text joined from parts cannot lend a RawValue; parse it if it is an object.
            Cow::Owned(owned) => match serde_json::from_str::<Value>(&owned) {
                Ok(object @ Value::Object(_)) => JsonObject::Parsed(object),
                _ => JsonObject::Wrapped(Cow::Owned(owned)),
            },
        }
    }
}

fn raw_object(text: &str) -> Option<&RawValue> {
    serde_json::from_str::<&RawValue>(text)
        .ok()
        .filter(|raw| raw.get().trim_start().starts_with('{'))
}

impl Serialize for JsonObject<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            JsonObject::Raw(raw) => raw.serialize(serializer),
            JsonObject::Parsed(value) => value.serialize(serializer),
            JsonObject::Wrapped(text) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("result", text)?;
                map.end()
            }
            JsonObject::Empty => serializer.serialize_map(Some(0))?.end(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Debug, Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
}

fn translate_request(request: &ChatRequest) -> Result<Request<'_>, TranslateError> {
    let mut system_parts: Vec<Part<'_>> = Vec::new();
    let mut contents: Vec<Content<'_>> = Vec::with_capacity(request.messages.len());
    for (index, message) in request.messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                if let Some(content) = &message.content {
                    system_parts.extend(content_parts(index, content)?);
                }
            }
            Role::User => {
                if let Some(content) = &message.content {
                    push_content(&mut contents, "user", content_parts(index, content)?);
                }
            }
            Role::Assistant => {
                let mut parts = match &message.content {
                    Some(content) => content_parts(index, content)?,
                    None => Vec::new(),
                };
                for call in message.tool_calls.iter().flatten() {
                    let (_, signature) = split_signature(&call.id);
                    parts.push(Part {
                        function_call: Some(FunctionCallOut {
                            name: &call.function.name,
                            args: raw_object(&call.function.arguments)
                                .map_or(JsonObject::Empty, JsonObject::Raw),
                        }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                push_content(&mut contents, "model", parts);
            }
            Role::Tool => {
                let id = message.tool_call_id.as_deref().unwrap_or_default();
                let name = function_name_for(request, index, id).ok_or_else(|| {
                    TranslateError::invalid(
                        format!("messages[{index}].tool_call_id"),
                        "does not match a tool call of an earlier assistant message",
                    )
                })?;
                let text = match &message.content {
                    Some(MessageContent::Text(text)) => Cow::Borrowed(text.as_str()),
                    Some(parts) => Cow::Owned(parts.joined_text()),
                    None => Cow::Borrowed(""),
                };
                push_content(
                    &mut contents,
                    "user",
                    vec![Part {
                        function_response: Some(FunctionResponseOut {
                            name,
                            response: JsonObject::from_text(text),
                        }),
                        ..Part::default()
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

    let tools = request
        .tools
        .as_ref()
        .filter(|tools| !tools.is_empty())
        .map(|tools| {
            [Tools {
                function_declarations: tools
                    .iter()
                    .map(|tool| FunctionDeclaration {
                        name: &tool.function.name,
                        description: tool.function.description.as_deref(),
                        parameters: tool.function.parameters.as_ref().map(sanitized_schema),
                    })
                    .collect(),
            }]
        });
    let tool_config = request.tool_choice.as_ref().map(|choice| {
        let (mode, allowed) = match choice {
            ToolChoice::None => ("NONE", None),
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Function { name } => ("ANY", Some([name.as_str()])),
        };
        ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names: allowed,
            },
        }
    });
    let (response_mime_type, response_schema) = match &request.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { json_schema }) => (
            Some("application/json"),
            json_schema.schema.as_ref().map(sanitized_schema),
        ),
        Some(ResponseFormat::Text) | None => (None, None),
    };

    Ok(Request {
        system_instruction: (!system_parts.is_empty()).then_some(Content {
            role: None,
            parts: system_parts,
        }),
        contents,
        tools,
        tool_config,
        generation_config: GenerationConfig {
            max_output_tokens: request.max_output_tokens(),
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k(),
            stop_sequences: request.stop.as_ref().map(|stop| stop.0.as_slice()),
            candidate_count: request.n,
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            response_mime_type,
            response_schema,
        },
    })
}

/// Gemini rejects consecutive same-role contents: append to the previous content instead.
fn push_content<'a>(contents: &mut Vec<Content<'a>>, role: &'static str, parts: Vec<Part<'a>>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role),
            parts,
        }),
    }
}

/// The function name of the latest earlier assistant tool call with this id (tool messages carry no name).
fn function_name_for<'a>(request: &'a ChatRequest, before: usize, id: &str) -> Option<&'a str> {
    request.messages[..before]
        .iter()
        .rev()
        .filter(|message| message.role == Role::Assistant)
        .flat_map(|message| message.tool_calls.iter().flatten())
        .find(|call| call.id == id)
        .map(|call| call.function.name.as_str())
}

fn text_part(text: &str) -> Part<'_> {
    Part {
        text: Some(Cow::Borrowed(text)),
        ..Part::default()
    }
}

fn content_parts(index: usize, content: &MessageContent) -> Result<Vec<Part<'_>>, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) if text.is_empty() => return Ok(Vec::new()),
        MessageContent::Text(text) => return Ok(vec![text_part(text)]),
        MessageContent::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (position, part) in parts.iter().enumerate() {
        let converted = match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if text.is_empty() {
                    continue;
                }
                text_part(text)
            }
            ContentPart::ImageUrl { image_url } => {
                let data = parse_data_url(&image_url.url).ok_or_else(|| {
                    TranslateError::unsupported(
                        PROVIDER,
                        format!(
                            "messages[{index}].content[{position}]: image URLs other than base64 data URLs"
                        ),
                    )
                })?;
                inline(Cow::Borrowed(data.media_type), data.base64)
            }
            ContentPart::InputAudio { input_audio } => inline(
                Cow::Owned(format!("audio/{}", input_audio.format)),
                &input_audio.data,
            ),
            ContentPart::File { file } => {
                let data = file
                    .file_data
                    .as_deref()
                    .and_then(parse_data_url)
                    .ok_or_else(|| {
                        TranslateError::unsupported(PROVIDER, "file parts without inline file_data")
                    })?;
                inline(Cow::Borrowed(data.media_type), data.base64)
            }
            other => {
                return Err(TranslateError::unsupported(
                    PROVIDER,
                    format!("`{}` content parts", other.kind()),
                ));
            }
        };
        out.push(converted);
    }
    Ok(out)
}

fn inline<'a>(mime_type: Cow<'a, str>, data: &'a str) -> Part<'a> {
    Part {
        inline_data: Some(Blob { mime_type, data }),
        ..Part::default()
    }
}

/// A copy of `schema` without the keywords Gemini rejects, at any depth.
fn sanitized_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| !UNSUPPORTED_SCHEMA_KEYWORDS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), sanitized_schema(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(sanitized_schema).collect()),
        other => other.clone(),
    }
}

/// Splits `<id>-ts-<base64url signature>` into the id and the standard-base64 signature Gemini expects.
fn split_signature(id: &str) -> (&str, Option<String>) {
    match id.split_once(SIGNATURE_MARKER) {
        Some((base, encoded)) => match URL_SAFE_NO_PAD.decode(encoded) {
            Ok(bytes) => (base, Some(STANDARD.encode(bytes))),
            Err(_) => (id, None),
        },
        None => (id, None),
    }
}

/// Builds the OpenAI tool-call id for a Gemini function call.
fn tool_call_id(base: &str, signature: Option<&str>) -> String {
    let decoded = signature.and_then(|signature| STANDARD.decode(signature).ok());
    match decoded {
        Some(bytes) => format!("{base}{SIGNATURE_MARKER}{}", URL_SAFE_NO_PAD.encode(bytes)),
        None => base.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: u32,
}

#[derive(Debug, Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<PartIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartIn {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<FunctionCallIn>,
    #[serde(default)]
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FunctionCallIn {
    name: String,
    #[serde(default)]
    args: Option<Box<RawValue>>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    total_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl UsageMetadata {
    fn to_usage(&self) -> Usage {
        from_gemini(
            self.prompt_token_count,
            self.candidates_token_count,
            self.thoughts_token_count,
            self.tool_use_prompt_token_count,
            self.cached_content_token_count,
            self.total_token_count,
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

/// How a candidate ended.
enum Ending {
    Finish(FinishReason),
    /// The model produced an unusable function call: surfaced as a retryable upstream error.
    Failed(String),
}

fn ending(reason: &str, has_tool_calls: bool) -> Ending {
    match reason {
        "STOP" if has_tool_calls => Ending::Finish(FinishReason::ToolCalls),
        "MAX_TOKENS" => Ending::Finish(FinishReason::Length),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
            Ending::Finish(FinishReason::ContentFilter)
        }
        image if image.starts_with("IMAGE_") => Ending::Finish(FinishReason::ContentFilter),
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
            Ending::Failed(format!("gemini finished with {reason}"))
        }
        _ => Ending::Finish(FinishReason::Stop),
    }
}

fn blocked_prompt(reason: &str) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::ContentFilter,
        200,
        format!("gemini blocked the prompt: {reason}"),
    )
    .with_code(Some(reason.to_owned()))
}

/// A stable id prefix from the response id (alphanumerics only, bounded).
fn id_stem(response_id: Option<&str>) -> String {
    response_id
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect()
}

/// The pieces of one candidate's parts, in OpenAI terms.
struct Translated {
    text: String,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
}

fn translate_parts(parts: Vec<PartIn>, stem: &str, next_call: &mut u32) -> Translated {
    let mut translated = Translated {
        text: String::new(),
        reasoning: String::new(),
        tool_calls: Vec::new(),
    };
    for part in parts {
        if let Some(call) = part.function_call {
            let base = call
                .id
                .unwrap_or_else(|| format!("call_{stem}_{next_call}"));
            *next_call += 1;
            translated.tool_calls.push(ToolCall {
                id: tool_call_id(&base, part.thought_signature.as_deref()),
                kind: ToolKind::Function,
                function: FunctionCall {
                    name: call.name,
                    arguments: call
                        .args
                        .map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned()),
                },
            });
        } else if let Some(text) = part.text {
            if part.thought {
                translated.reasoning.push_str(&text);
            } else {
                translated.text.push_str(&text);
            }
        }
    }
    translated
}

pub(crate) fn parse_chat_response(
    body: &[u8],
    created: u64,
) -> Result<ChatCompletion, UpstreamError> {
    // Every response field is optional, so an error envelope would parse as an empty response: check first.
    if let Some(envelope) = embedded_error(body) {
        return Err(classified(200, envelope));
    }
    let response: Response = match serde_json::from_slice(body) {
        Ok(response) => response,
        Err(error) => {
            return Err(match error_envelope(body) {
                Some(envelope) => classified(200, envelope),
                None => {
                    UpstreamError::protocol(200, format!("invalid generateContent body: {error}"))
                }
            });
        }
    };
    if response.candidates.is_empty()
        && let Some(reason) = response
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
    {
        return Err(blocked_prompt(reason));
    }
    let stem = id_stem(response.response_id.as_deref());
    let mut next_call = 0;
    let mut choices = Vec::with_capacity(response.candidates.len());
    for candidate in response.candidates {
        let parts = candidate
            .content
            .map(|content| content.parts)
            .unwrap_or_default();
        let translated = translate_parts(parts, &stem, &mut next_call);
        let has_tool_calls = !translated.tool_calls.is_empty();
        let finish_reason = match candidate
            .finish_reason
            .as_deref()
            .map(|reason| ending(reason, has_tool_calls))
        {
            Some(Ending::Failed(why)) => {
                return Err(UpstreamError::new(UpstreamErrorKind::Server, 200, why));
            }
            Some(Ending::Finish(reason)) => Some(reason),
            None => None,
        };
        let mut extra = serde_json::Map::new();
        if !translated.reasoning.is_empty() {
            extra.insert(
                "reasoning_content".to_owned(),
                Value::String(translated.reasoning),
            );
        }
        choices.push(Choice {
            index: candidate.index,
            message: ResponseMessage {
                role: Role::Assistant,
                content: (!translated.text.is_empty() || !has_tool_calls)
                    .then_some(translated.text),
                refusal: None,
                tool_calls: has_tool_calls.then_some(translated.tool_calls),
                extra,
            },
            finish_reason,
            logprobs: None,
            extra: serde_json::Map::new(),
        });
    }
    Ok(ChatCompletion {
        id: response.response_id.unwrap_or_default(),
        object: OBJECT_CHAT_COMPLETION.to_owned(),
        created,
        model: response.model_version.unwrap_or_default(),
        choices,
        usage: response
            .usage_metadata
            .as_ref()
            .map(UsageMetadata::to_usage),
        system_fingerprint: None,
        service_tier: None,
        extra: serde_json::Map::new(),
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

fn error_envelope(body: &[u8]) -> Option<ErrorEnvelope> {
    serde_json::from_slice(body).ok()
}

/// An error envelope in a 2xx body or stream event; the substring check keeps the common path parse-free.
fn embedded_error(body: &[u8]) -> Option<ErrorEnvelope> {
    memchr::memmem::find(body, b"\"error\"").and_then(|_| error_envelope(body))
}

pub(crate) fn parse_error(status: u16, headers: &http::HeaderMap, body: &[u8]) -> UpstreamError {
    let error = match error_envelope(body) {
        Some(envelope) => classified(status, envelope),
        None => UpstreamError::new(
            kind_for_status(status),
            status,
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    if error.retry_after.is_some() {
        return error;
    }
    error.with_retry_after(retry_after_from_headers(headers))
}

fn classified(status: u16, envelope: ErrorEnvelope) -> UpstreamError {
    let body = envelope.error;
    let detail = |field: &str| {
        body.details
            .iter()
            .find_map(|detail| detail.get(field).and_then(Value::as_str))
    };
    let kind = if detail("reason") == Some("API_KEY_INVALID") {
        UpstreamErrorKind::Auth
    } else {
        match body.status.as_str() {
            "RESOURCE_EXHAUSTED" => UpstreamErrorKind::RateLimited,
            "UNAVAILABLE" => UpstreamErrorKind::Overloaded,
            "DEADLINE_EXCEEDED" => UpstreamErrorKind::Timeout,
            "PERMISSION_DENIED" | "UNAUTHENTICATED" => UpstreamErrorKind::Auth,
            "NOT_FOUND" => UpstreamErrorKind::NotFound,
            "INTERNAL" => UpstreamErrorKind::Server,
            "FAILED_PRECONDITION" => UpstreamErrorKind::QuotaExceeded,
            "INVALID_ARGUMENT" => {
                let lower = body.message.to_ascii_lowercase();
                if lower.contains("token count") || lower.contains("maximum number of tokens") {
                    UpstreamErrorKind::ContextLengthExceeded
                } else {
                    UpstreamErrorKind::BadRequest
                }
            }
            _ if status == 200 => UpstreamErrorKind::Server,
            _ => kind_for_status(status),
        }
    };
    let retry_after = detail("retryDelay").and_then(parse_proto_duration);
    let code = (!body.status.is_empty()).then(|| body.status.clone());
    UpstreamError::new(kind, status, body.message)
        .with_code(code)
        .with_retry_after(retry_after)
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// `alt=sse` events, each a full response holding only the new parts; ends at connection close.
#[derive(Debug)]
pub(crate) struct StreamDecoder {
    header: ChunkHeader,
    started: bool,
    stem: String,
    next_call: u32,
    /// (candidate index, tool calls so far): OpenAI numbers calls within a choice, and `STOP` after calls
    /// means `tool_calls`.
    calls_per_candidate: Vec<(u32, u32)>,
    /// Candidates that already got their `role` delta.
    greeted: Vec<u32>,
    saw_finish: bool,
    usage: Option<Usage>,
}

impl StreamDecoder {
    pub(crate) fn new(created: u64) -> Self {
        Self {
            header: ChunkHeader {
                created,
                ..ChunkHeader::default()
            },
            started: false,
            stem: String::new(),
            next_call: 0,
            calls_per_candidate: Vec::new(),
            greeted: Vec::new(),
            saw_finish: false,
            usage: None,
        }
    }

    pub(crate) fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<StreamItem>) -> Progress {
        let data = event.data.trim();
        if data.is_empty() {
            return Progress::Continue;
        }
        if let Some(envelope) = embedded_error(data.as_bytes()) {
            out.push(StreamItem::Error(classified(200, envelope)));
            return Progress::Failed;
        }
        let response: Response = match serde_json::from_str(data) {
            Ok(response) => response,
            Err(error) => {
                out.push(StreamItem::Error(UpstreamError::protocol(
                    200,
                    format!("invalid stream event: {error}"),
                )));
                return Progress::Failed;
            }
        };
        if !self.started {
            self.started = true;
            self.header.id = response.response_id.clone().unwrap_or_default();
            self.header.model = response.model_version.clone().unwrap_or_default();
            self.stem = id_stem(response.response_id.as_deref());
        }
        if let Some(metadata) = &response.usage_metadata {
            // Running totals: the last report wins, and an event without one keeps the previous.
            self.usage = Some(metadata.to_usage());
        }
        if response.candidates.is_empty()
            && let Some(reason) = response
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
        {
            out.push(StreamItem::Error(blocked_prompt(reason)));
            return Progress::Failed;
        }
        for candidate in response.candidates {
            let index = candidate.index;
            let parts = candidate
                .content
                .map(|content| content.parts)
                .unwrap_or_default();
            let translated = translate_parts(parts, &self.stem, &mut self.next_call);
            let ordinal_base = self.reserve_tool_ordinals(index, translated.tool_calls.len());
            let has_tool_calls = ordinal_base > 0 || !translated.tool_calls.is_empty();
            let finish_reason = match candidate
                .finish_reason
                .as_deref()
                .map(|reason| ending(reason, has_tool_calls))
            {
                Some(Ending::Failed(why)) => {
                    out.push(StreamItem::Error(UpstreamError::new(
                        UpstreamErrorKind::Server,
                        200,
                        why,
                    )));
                    return Progress::Failed;
                }
                Some(Ending::Finish(reason)) => {
                    self.saw_finish = true;
                    Some(reason)
                }
                None => None,
            };
            let first = !self.greeted.contains(&index);
            if first {
                self.greeted.push(index);
            }
            let delta = Delta {
                role: first.then_some(Role::Assistant),
                content: (first || !translated.text.is_empty()).then_some(translated.text),
                refusal: None,
                tool_calls: (!translated.tool_calls.is_empty()).then(|| {
                    translated
                        .tool_calls
                        .into_iter()
                        .zip(ordinal_base..)
                        .map(|(call, ordinal)| ToolCallDelta {
                            index: ordinal,
                            id: Some(call.id),
                            kind: Some(ToolKind::Function),
                            function: Some(FunctionCallDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                        })
                        .collect()
                }),
                reasoning_content: (!translated.reasoning.is_empty())
                    .then_some(translated.reasoning),
            };
            let empty = delta.role.is_none()
                && delta.content.is_none()
                && delta.tool_calls.is_none()
                && delta.reasoning_content.is_none();
            if empty && finish_reason.is_none() {
                continue;
            }
            out.push(StreamItem::Chunk(self.header.chunk(
                vec![ChunkChoice {
                    index,
                    delta,
                    finish_reason,
                    logprobs: None,
                }],
                None,
            )));
        }
        Progress::Continue
    }

    /// Returns the first tool-call index for `new_calls` calls of `candidate` and counts them.
    fn reserve_tool_ordinals(&mut self, candidate: u32, new_calls: usize) -> u32 {
        let added = u32::try_from(new_calls).unwrap_or(u32::MAX);
        match self
            .calls_per_candidate
            .iter_mut()
            .find(|(index, _)| *index == candidate)
        {
            Some((_, count)) => {
                let base = *count;
                *count += added;
                base
            }
            None => {
                self.calls_per_candidate.push((candidate, added));
                0
            }
        }
    }

    pub(crate) fn on_eof(&mut self, out: &mut Vec<StreamItem>) -> Progress {
        if !self.saw_finish {
            out.push(StreamItem::Error(UpstreamError::protocol(
                200,
                "stream ended before a finish reason",
            )));
            return Progress::Failed;
        }
        if let Some(usage) = self.usage.take() {
            out.push(StreamItem::Chunk(
                self.header.chunk(Vec::new(), Some(usage)),
            ));
        }
        Progress::Complete
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct BatchEmbedRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

/// `POST {endpoint}/v1beta/models/{model}:batchEmbedContents` (used for one input too; order is kept).
pub fn build_embeddings_request(
    target: &BackendTarget,
    request: &EmbeddingsRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let texts: Vec<&str> = match &request.input {
        EmbeddingInput::Text(text) => vec![text.as_str()],
        EmbeddingInput::Texts(texts) => texts.iter().map(String::as_str).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(TranslateError::unsupported(
                PROVIDER,
                "token-array embedding input",
            ));
        }
    };
    let model_name = format!("models/{}", model_id(&target.model));
    let body = BatchEmbedRequest {
        requests: texts
            .into_iter()
            .map(|text| EmbedRequest {
                model: &model_name,
                content: Content {
                    role: None,
                    parts: vec![Part {
                        text: Some(Cow::Borrowed(text)),
                        ..Part::default()
                    }],
                },
                output_dimensionality: request.dimensions,
            })
            .collect(),
    };
    json_post(
        target,
        target.url(&format!("/v1beta/{model_name}:batchEmbedContents")),
        Auth::Header("x-goog-api-key", target.require_key()?),
        &[],
        serde_json::to_vec(&body)?,
    )
}

#[derive(Debug, Deserialize)]
struct BatchEmbedResponse {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(Debug, Deserialize)]
struct Values {
    #[serde(default)]
    values: Vec<f32>,
}

/// Gemini embeddings → OpenAI list. Gemini reports no token counts, so usage is zero.
pub(crate) fn parse_embeddings_response(
    request: &EmbeddingsRequest,
    body: &[u8],
) -> Result<EmbeddingsOutcome, UpstreamError> {
    let parsed: BatchEmbedResponse = serde_json::from_slice(body).map_err(|error| {
        UpstreamError::protocol(200, format!("invalid batchEmbedContents body: {error}"))
    })?;
    let base64 = request.encoding_format == Some(EncodingFormat::Base64);
    let data = parsed
        .embeddings
        .into_iter()
        .zip(0u32..)
        .map(|(embedding, index)| Embedding {
            object: "embedding".to_owned(),
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = embedding
                    .values
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                EmbeddingVector::Base64(STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(embedding.values)
            },
        })
        .collect();
    let response = EmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: request.model.clone(),
        usage: EmbeddingsUsage::default(),
    };
    let body = serde_json::to_vec(&response)
        .map_err(|error| UpstreamError::protocol(200, format!("encode embeddings: {error}")))?;
    Ok(EmbeddingsOutcome {
        body: Bytes::from(body),
        usage: response.usage,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::openai::ChatCompletionChunk;
    use crate::providers::openai::tests::run;
    use crate::providers::{
        ApiKey, ProviderKind, build_chat_request as build,
        build_embeddings_request as build_embeddings,
        parse_embeddings_response as parse_embeddings, parse_error_response,
    };
    use http::HeaderMap;
    use pretty_assertions::assert_eq;

    fn target() -> BackendTarget {
        BackendTarget::new(
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com",
            "models/gemini-2.5-flash",
        )
        .with_api_key(ApiKey::new("AIza-secret"))
    }

    const REQUEST: &str = r#"{
      "model": "alias",
      "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [
          {"type": "text", "text": "Weather in Paris and Rome?"},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_abc_0-ts-c2lnMQ", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
          {"id": "call_abc_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_abc_0-ts-c2lnMQ", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_abc_1", "content": "{\"temp\":21}"},
        {"role": "user", "content": "Thanks"}
      ],
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
          "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "max_tokens": 256, "temperature": 0.7, "top_p": 0.95, "stop": ["END"], "seed": 42, "n": 1,
      "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "additionalProperties": false}}},
      "stream": true
    }"#;

    #[test]
    fn request_translates_roles_tools_signatures_and_config() {
        let request: ChatRequest = serde_json::from_str(REQUEST).unwrap();
        let upstream = build(&target(), &request).unwrap();
        assert_eq!(
            upstream.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(upstream.headers()["x-goog-api-key"], "AIza-secret");
        assert!(upstream.headers()["x-goog-api-key"].is_sensitive());
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        let expected = serde_json::json!({
          "systemInstruction": {"parts": [{"text": "Be terse."}]},
          "contents": [
            {"role": "user", "parts": [
              {"text": "Weather in Paris and Rome?"},
              {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]},
            {"role": "model", "parts": [
              {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="},
              {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
            {"role": "user", "parts": [
              {"functionResponse": {"name": "get_weather", "response": {"result": "18C, sunny"}}},
              {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
              {"text": "Thanks"}]}
          ],
          "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}],
          "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
          "generationConfig": {"maxOutputTokens": 256, "temperature": 0.7, "topP": 0.95, "stopSequences": ["END"],
            "candidateCount": 1, "seed": 42, "responseMimeType": "application/json", "responseSchema": {"type": "object"}}
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn unknown_tool_result_ids_and_remote_images_are_refused() {
        let cases = [
            (
                r#"{"model":"a","messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}"#,
                "messages[0].tool_call_id: does not match a tool call of an earlier assistant message",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/cat.png"}}]}]}"#,
                "messages[0].content[0]: image URLs other than base64 data URLs is not supported by provider gemini",
            ),
        ];
        for (body, expected) in cases {
            let request: ChatRequest = serde_json::from_str(body).unwrap();
            assert_eq!(
                build(&target(), &request).unwrap_err().to_string(),
                expected
            );
        }
    }

    #[test]
    fn thought_signatures_survive_the_round_trip_through_ids() {
        let id = tool_call_id("call_x_0", Some("c2lnMQ=="));
        assert_eq!(id, "call_x_0-ts-c2lnMQ");
        assert_eq!(
            split_signature(&id),
            ("call_x_0", Some("c2lnMQ==".to_owned()))
        );
        assert_eq!(split_signature("call_1"), ("call_1", None));
    }

    #[test]
    fn response_with_function_call_maps_to_tool_calls() {
        let body = br#"{"candidates": [{"index": 0, "finishReason": "STOP",
           "content": {"role": "model", "parts": [{"text": "Checking."},
             {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "c2lnMQ=="}]}}],
         "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 40, "totalTokenCount": 60,
           "cachedContentTokenCount": 4, "thoughtsTokenCount": 8},
         "modelVersion": "gemini-2.5-flash", "responseId": "abc123"}"#;
        let completion = parse_chat_response(body, 9).unwrap();
        assert_eq!(
            (
                completion.id.as_str(),
                completion.model.as_str(),
                completion.created
            ),
            ("abc123", "gemini-2.5-flash", 9)
        );
        let choice = &completion.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content.as_deref(), Some("Checking."));
        let call = &choice.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id, "call_abc123_0-ts-c2lnMQ");
        assert_eq!(call.function.arguments, r#"{"city": "Rome"}"#);
        let usage = completion.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (12, 48, 60)
        );
        assert_eq!((usage.cached_tokens(), usage.reasoning_tokens()), (4, 8));
    }

    #[test]
    fn finish_reasons_and_blocked_prompts() {
        let cases = [
            ("STOP", Some(FinishReason::Stop)),
            ("MAX_TOKENS", Some(FinishReason::Length)),
            ("SAFETY", Some(FinishReason::ContentFilter)),
            ("RECITATION", Some(FinishReason::ContentFilter)),
            ("IMAGE_SAFETY", Some(FinishReason::ContentFilter)),
            ("OTHER", Some(FinishReason::Stop)),
            ("MALFORMED_FUNCTION_CALL", None),
        ];
        for (reason, expected) in cases {
            let body = format!(
                r#"{{"candidates":[{{"index":0,"finishReason":"{reason}","content":{{"role":"model","parts":[{{"text":"x"}}]}}}}]}}"#
            );
            let result = parse_chat_response(body.as_bytes(), 0);
            match expected {
                Some(finish) => assert_eq!(
                    result.unwrap().choices[0].finish_reason,
                    Some(finish),
                    "{reason}"
                ),
                None => {
                    let error = result.unwrap_err();
                    assert_eq!(error.kind, UpstreamErrorKind::Server);
                    assert!(error.is_retryable());
                }
            }
        }
        let blocked =
            parse_chat_response(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#, 0).unwrap_err();
        assert_eq!(blocked.kind, UpstreamErrorKind::ContentFilter);
    }

    #[test]
    fn errors_are_classified() {
        let cases: &[(u16, &str, UpstreamErrorKind)] = &[
            (
                429,
                r#"{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
                UpstreamErrorKind::RateLimited,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#,
                UpstreamErrorKind::Auth,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
                UpstreamErrorKind::ContextLengthExceeded,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"Please ensure that multiturn requests alternate between user and model.","status":"INVALID_ARGUMENT"}}"#,
                UpstreamErrorKind::BadRequest,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"User location is not supported","status":"FAILED_PRECONDITION"}}"#,
                UpstreamErrorKind::QuotaExceeded,
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
                UpstreamErrorKind::Auth,
            ),
            (
                404,
                r#"{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}"#,
                UpstreamErrorKind::NotFound,
            ),
            (
                500,
                r#"{"error":{"code":500,"message":"internal","status":"INTERNAL"}}"#,
                UpstreamErrorKind::Server,
            ),
            (
                503,
                r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
                UpstreamErrorKind::Overloaded,
            ),
            (
                504,
                r#"{"error":{"code":504,"message":"deadline","status":"DEADLINE_EXCEEDED"}}"#,
                UpstreamErrorKind::Timeout,
            ),
        ];
        for (status, body, expected) in cases {
            let error = parse_error_response(
                ProviderKind::Gemini,
                *status,
                &HeaderMap::new(),
                body.as_bytes(),
            );
            assert_eq!(error.kind, *expected, "{body}");
        }
        let limited = parse_error_response(
            ProviderKind::Gemini,
            429,
            &HeaderMap::new(),
            cases[0].1.as_bytes(),
        );
        assert_eq!(
            limited.retry_after,
            Some(std::time::Duration::from_secs(37))
        );
        assert_eq!(limited.provider_code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        // A bad key is a 400 upstream but the gateway's fault: clients see 502, never 400.
        let bad_key = parse_error_response(
            ProviderKind::Gemini,
            400,
            &HeaderMap::new(),
            cases[1].1.as_bytes(),
        );
        assert_eq!(bad_key.client_error().status, 502);
    }

    pub(crate) const STREAM: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Chec\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":1,\"totalTokenCount\":13},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc123\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"king \u{e9}\u{1f326}.\"}]},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc123\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Rome\"}}},{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":9,\"totalTokenCount\":21},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc123\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":10,\"totalTokenCount\":22},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc123\"}\r\n\r\n",
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
    fn stream_translates_text_whole_function_calls_and_last_usage_at_every_split() {
        let bytes = STREAM.as_bytes();
        let (reference, translator) = run(ProviderKind::Gemini, &[bytes]);
        assert!(translator.is_complete());
        let chunks = chunks(&reference);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("Chec"));
        assert_eq!(
            chunks[1].choices[0].delta.content.as_deref(),
            Some("king \u{e9}\u{1f326}.")
        );
        let calls = chunks[2].choices[0].delta.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].index, calls[1].index), (0, 1));
        assert_eq!(calls[0].id.as_deref(), Some("call_abc123_0"));
        assert_eq!(calls[1].id.as_deref(), Some("call_abc123_1"));
        let function = calls[0].function.as_ref().unwrap();
        assert_eq!(
            (function.name.as_deref(), function.arguments.as_deref()),
            (Some("get_weather"), Some(r#"{"city":"Rome"}"#))
        );
        assert_eq!(
            chunks[3].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        assert!(chunks[4].choices.is_empty());
        let usage = translator.usage().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (12, 10, 22)
        );
        for split in 1..bytes.len() {
            let (items, _) = run(ProviderKind::Gemini, &[&bytes[..split], &bytes[split..]]);
            assert_eq!(items, reference, "split at {split}");
        }
    }

    #[test]
    fn stream_errors_and_cut_streams() {
        let error = "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n";
        let (items, translator) = run(ProviderKind::Gemini, &[error.as_bytes()]);
        assert!(translator.is_failed());
        assert!(
            matches!(&items[..], [StreamItem::Error(error)] if error.kind == UpstreamErrorKind::Overloaded)
        );

        let cut = STREAM.find("data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"\"}]},\"finishReason\"").unwrap();
        let later = format!("{}{error}", &STREAM[..cut]);
        let (items, _) = run(ProviderKind::Gemini, &[later.as_bytes()]);
        assert_eq!(items.len(), 4);
        assert!(
            matches!(items.last(), Some(StreamItem::Error(error)) if error.kind == UpstreamErrorKind::Overloaded)
        );

        let (items, translator) = run(ProviderKind::Gemini, &[&STREAM.as_bytes()[..cut]]);
        assert!(translator.is_failed());
        assert!(
            matches!(items.last(), Some(StreamItem::Error(error)) if error.kind == UpstreamErrorKind::Protocol)
        );

        let blocked = "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"responseId\":\"r\"}\n\n";
        let (items, _) = run(ProviderKind::Gemini, &[blocked.as_bytes()]);
        assert!(
            matches!(&items[..], [StreamItem::Error(error)] if error.kind == UpstreamErrorKind::ContentFilter)
        );
    }

    #[test]
    fn embeddings_translate_both_ways() {
        let request: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"embed","input":["a","b"],"dimensions":768}"#)
                .unwrap();
        let upstream = build_embeddings(&target(), &request).unwrap();
        assert_eq!(
            upstream.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:batchEmbedContents"
        );
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"requests": [
              {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 768},
              {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 768}]})
        );
        let response =
            Bytes::from_static(br#"{"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25]}]}"#);
        let outcome = parse_embeddings(ProviderKind::Gemini, &request, response.clone()).unwrap();
        let value: Value = serde_json::from_slice(&outcome.body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"object": "list", "model": "embed",
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                       {"object": "embedding", "index": 1, "embedding": [0.25]}],
              "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        );
        let base64_request: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"embed","input":"a","encoding_format":"base64"}"#)
                .unwrap();
        let outcome = parse_embeddings(ProviderKind::Gemini, &base64_request, response).unwrap();
        let value: Value = serde_json::from_slice(&outcome.body).unwrap();
        let encoded = value["data"][0]["embedding"].as_str().unwrap();
        let bytes = STANDARD.decode(encoded).unwrap();
        assert_eq!(
            bytes,
            [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat()
        );
    }
}
