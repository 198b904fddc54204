//! OpenAI Chat Completions, Embeddings and Models wire types; the chat types are also the gateway's canonical model.
//!
//! Unknown top-level and per-message fields are kept in `extra` so OpenAI-family backends receive them untouched.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{JsonMap, tag_of, take_field};

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// `POST /v1/chat/completions` body, and the canonical request every provider translates from.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Legacy output bound; [`ChatRequest::max_output_tokens`] prefers `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field (`logprobs`, `reasoning_effort`, `metadata`, vendor extensions such as `top_k`, …).
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl ChatRequest {
    /// Whether the client asked for a streamed response.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streaming client asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|options| options.include_usage)
            .unwrap_or(false)
    }

    /// The output-token bound, preferring `max_completion_tokens` over the legacy `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// `top_k` is not an OpenAI field, but SDK users pass it as an extra body field for other providers.
    pub fn top_k(&self) -> Option<u64> {
        self.extra.get("top_k").and_then(Value::as_u64)
    }

    /// Checks the rules serde cannot express; the message names the field.
    pub fn validate(&self) -> Result<(), super::RequestError> {
        if self.model.is_empty() {
            return Err(super::RequestError::new("model: must not be empty"));
        }
        if self.messages.is_empty() {
            return Err(super::RequestError::new("messages: must not be empty"));
        }
        for (index, message) in self.messages.iter().enumerate() {
            if message.role == Role::Tool && message.tool_call_id.is_none() {
                return Err(super::RequestError::new(format!(
                    "messages[{index}].tool_call_id: missing field (required for role `tool`)"
                )));
            }
        }
        if self.n == Some(0) {
            return Err(super::RequestError::new("n: must be at least 1"));
        }
        Ok(())
    }
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// Chat roles. `function` is the deprecated predecessor of `tool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    #[default]
    User,
    Assistant,
    Tool,
    Function,
}

/// One entry of `messages`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    /// `null` or absent on assistant turns that only call tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl ChatMessage {
    /// A message with plain text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(MessageContent::Text(text.into())),
            ..Self::default()
        }
    }
}

/// Message content: a string, or an array of typed parts.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// Text of a string content, or of its text parts joined without separator (how OpenAI reads them).
    pub fn joined_text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|part| match part {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl Serialize for MessageContent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageContent::Text(text) => serializer.serialize_str(text),
            MessageContent::Parts(parts) => parts.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or an array of content parts")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(MessageContent::Parts)
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One content part. Unknown part types are kept verbatim in [`ContentPart::Other`] for pass-through.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: InputAudio },
    File { file: FileInput },
    Refusal { refusal: String },
    Other(JsonMap),
}

impl ContentPart {
    /// The part's `type` tag.
    pub fn kind(&self) -> &str {
        match self {
            ContentPart::Text { .. } => "text",
            ContentPart::ImageUrl { .. } => "image_url",
            ContentPart::InputAudio { .. } => "input_audio",
            ContentPart::File { .. } => "file",
            ContentPart::Refusal { .. } => "refusal",
            ContentPart::Other(object) => object.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let ContentPart::Other(object) = self {
            return object.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", self.kind())?;
        match self {
            ContentPart::Text { text } => map.serialize_entry("text", text)?,
            ContentPart::ImageUrl { image_url } => map.serialize_entry("image_url", image_url)?,
            ContentPart::InputAudio { input_audio } => {
                map.serialize_entry("input_audio", input_audio)?
            }
            ContentPart::File { file } => map.serialize_entry("file", file)?,
            ContentPart::Refusal { refusal } => map.serialize_entry("refusal", refusal)?,
            ContentPart::Other(_) => {}
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut object = JsonMap::deserialize(deserializer)?;
        let part = match tag_of::<D::Error>(&object)? {
            "text" => ContentPart::Text {
                text: take_field(&mut object, "text")?,
            },
            "image_url" => ContentPart::ImageUrl {
                image_url: take_field(&mut object, "image_url")?,
            },
            "input_audio" => ContentPart::InputAudio {
                input_audio: take_field(&mut object, "input_audio")?,
            },
            "file" => ContentPart::File {
                file: take_field(&mut object, "file")?,
            },
            "refusal" => ContentPart::Refusal {
                refusal: take_field(&mut object, "refusal")?,
            },
            _ => ContentPart::Other(object),
        };
        Ok(part)
    }
}

/// `image_url` part payload: an https URL or a `data:` URL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `input_audio` part payload: base64 audio and its format (`wav`, `mp3`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct InputAudio {
    pub data: String,
    pub format: String,
}

/// `file` part payload: inline `file_data` (a data URL) or an uploaded `file_id`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct FileInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// `stop`: one string or up to four; always kept as a list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stop(pub Vec<String>);

impl Serialize for Stop {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor;

        impl<'de> Visitor<'de> for StopVisitor {
            type Value = Stop;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Stop(vec![text.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Stop)
            }
        }

        deserializer.deserialize_any(StopVisitor)
    }
}

/// A tool definition; only `function` tools exist in Chat Completions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: ToolKind,
    pub function: FunctionDefinition,
}

/// The `type` of a tool or tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    #[default]
    Function,
}

/// `tools[].function`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function { name: String },
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Auto => serializer.serialize_str("auto"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::Function { name } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "function")?;
                map.serialize_entry("function", &NamedFunction { name: name.clone() })?;
                map.end()
            }
        }
    }
}

#[derive(Deserialize, Serialize)]
struct NamedFunction {
    name: String,
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(mode) => match mode.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                other => Err(de::Error::unknown_variant(
                    other,
                    &["none", "auto", "required"],
                )),
            },
            Value::Object(mut object) => {
                let kind = tag_of::<D::Error>(&object)?;
                if kind != "function" {
                    return Err(de::Error::unknown_variant(kind, &["function"]));
                }
                let function: NamedFunction = take_field(&mut object, "function")?;
                Ok(ToolChoice::Function {
                    name: function.name,
                })
            }
            _ => Err(de::Error::custom(
                "expected \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
            )),
        }
    }
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A complete tool call, in an assistant message of a request or a response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    pub function: FunctionCall,
}

/// `tool_calls[].function`: `arguments` is a JSON *string* and may be invalid JSON.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// A non-streaming `chat.completion` response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default = "object_chat_completion")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Provider additions such as Azure's `prompt_filter_results`.
    #[serde(flatten)]
    pub extra: JsonMap,
}

fn object_chat_completion() -> String {
    OBJECT_CHAT_COMPLETION.to_owned()
}

/// `object` of a non-streaming response.
pub const OBJECT_CHAT_COMPLETION: &str = "chat.completion";
/// `object` of a stream chunk.
pub const OBJECT_CHAT_COMPLETION_CHUNK: &str = "chat.completion.chunk";

/// One `choices[]` entry of a non-streaming response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    pub finish_reason: Option<FinishReason>,
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// e.g. Azure's `content_filter_results`.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// The assistant message of a response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ResponseMessage {
    #[serde(default = "assistant")]
    pub role: Role,
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// e.g. `reasoning_content` from vLLM/DeepSeek-style servers, `annotations`, `audio`.
    #[serde(flatten)]
    pub extra: JsonMap,
}

fn assistant() -> Role {
    Role::Assistant
}

/// Why generation stopped. Unknown values from OpenAI-compatible servers are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
    Other(String),
}

impl FinishReason {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::FunctionCall => "function_call",
            FinishReason::Other(other) => other,
        }
    }

    /// Parses a wire value.
    pub fn from_wire(value: &str) -> Self {
        match value {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "function_call" => FinishReason::FunctionCall,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReasonVisitor;

        impl Visitor<'_> for ReasonVisitor {
            type Value = FinishReason;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a finish reason string")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(FinishReason::from_wire(value))
            }
        }

        deserializer.deserialize_str(ReasonVisitor)
    }
}

/// Token usage. `cached_tokens` is included in `prompt_tokens`, `reasoning_tokens` in `completion_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Prompt tokens written to a provider cache (Anthropic `cache_creation_input_tokens`), included in
    /// `prompt_tokens`. Not an OpenAI field: kept for metering and the Anthropic surface, never serialized.
    #[serde(skip)]
    pub cache_creation_tokens: u64,
}

impl Usage {
    /// Prompt tokens served from a provider cache (included in `prompt_tokens`).
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0)
    }

    /// Reasoning tokens (included in `completion_tokens`).
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|details| details.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One `chat.completion.chunk` of a stream: the canonical stream unit.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChatCompletionChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Present only on the final usage chunk (whose `choices` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
}

/// One `choices[]` entry of a chunk.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// The incremental message of a chunk.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Reasoning text as vLLM/DeepSeek-style servers stream it; Anthropic thinking maps here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A streamed tool-call fragment keyed by `index`; the first fragment of a call carries `id` and `name`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// `tool_calls[].function` of a delta.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// The inner error object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// Serializes an OpenAI error body.
pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Detail<'a>,
    }
    #[derive(Serialize)]
    struct Detail<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    }
    let body = Body {
        error: Detail {
            message,
            kind,
            param,
            code,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Embeddings and models
// ---------------------------------------------------------------------------

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl EmbeddingsRequest {
    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), super::RequestError> {
        if self.model.is_empty() {
            return Err(super::RequestError::new("model: must not be empty"));
        }
        if self.input.is_empty() {
            return Err(super::RequestError::new("input: must not be empty"));
        }
        Ok(())
    }
}

/// `input`: a string, strings, a token array, or token arrays.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        match self {
            EmbeddingInput::Text(_) => false,
            EmbeddingInput::Texts(texts) => texts.is_empty(),
            EmbeddingInput::Tokens(tokens) => tokens.is_empty(),
            EmbeddingInput::TokenBatches(batches) => batches.is_empty(),
        }
    }
}

/// `encoding_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EmbeddingsResponse {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

/// One embedding: a float array, or a base64 string of little-endian f32 when `encoding_format` is `base64`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// The vector in either encoding.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

/// Embeddings usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct EmbeddingsUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// `GET /v1/models` response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

impl ModelList {
    /// A list in OpenAI's shape.
    pub fn new(data: Vec<Model>) -> Self {
        Self {
            object: "list".to_owned(),
            data,
        }
    }
}

/// One model entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

impl Model {
    /// A model entry in OpenAI's shape.
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            object: "model".to_owned(),
            created,
            owned_by: owned_by.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::parse_body;
    use pretty_assertions::assert_eq;

    const FULL_REQUEST: &str = r#"{
      "model": "gpt-4o",
      "messages": [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [
          {"type": "text", "text": "What is in this image, and the weather in Paris?"},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "auto"}}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_1", "type": "function",
           "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}
      ],
      "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": true}}],
      "tool_choice": "auto",
      "parallel_tool_calls": true,
      "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
      "temperature": 0.7, "top_p": 1, "max_completion_tokens": 512,
      "stop": ["END"], "n": 1, "seed": 42,
      "stream": true, "stream_options": {"include_usage": true},
      "user": "u-123",
      "logprobs": false, "reasoning_effort": "low"
    }"#;

    #[test]
    fn full_request_parses_and_keeps_unknown_fields() {
        let request: ChatRequest = parse_body(FULL_REQUEST.as_bytes()).unwrap();
        request.validate().unwrap();
        assert_eq!(request.messages.len(), 4);
        assert_eq!(request.messages[0].role, Role::Developer);
        let Some(MessageContent::Parts(parts)) = &request.messages[1].content else {
            panic!("parts expected");
        };
        assert_eq!(parts[1].kind(), "image_url");
        assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(request.stop, Some(Stop(vec!["END".into()])));
        assert!(request.wants_stream_usage());
        assert_eq!(request.max_output_tokens(), Some(512));
        assert_eq!(
            request.extra.get("reasoning_effort"),
            Some(&Value::from("low"))
        );
        assert!(matches!(
            request.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        // Round trip keeps every field; an absent assistant `content` is omitted rather than null, and
        // numbers that were integers come back as floats where the field is a float.
        let mut original: Value = serde_json::from_str(FULL_REQUEST).unwrap();
        original["messages"][2]
            .as_object_mut()
            .unwrap()
            .remove("content");
        original["top_p"] = serde_json::json!(1.0);
        let again: Value = serde_json::to_value(&request).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        let cases = [
            (r#"{"model":"m"}"#, "messages: missing field"),
            (
                r#"{"model":"m","messages":[{"content":"hi"}]}"#,
                "messages[0].role: missing field",
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
                "messages[0].role: unknown variant `wizard`, expected one of `system`, `developer`, `user`, `assistant`, `tool`, `function`",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content: invalid type: integer `5`, expected a string or an array of content parts",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "messages[0].content[0].image_url: missing field",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#,
                "tool_choice: unknown variant `sometimes`, expected one of `none`, `auto`, `required`",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_body::<ChatRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(error.message(), expected, "body {body}");
        }
    }

    #[test]
    fn semantic_validation_names_the_field() {
        let cases = [
            (
                r#"{"model":"m","messages":[]}"#,
                "messages: must not be empty",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].tool_call_id: missing field (required for role `tool`)",
            ),
            (
                r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
                "model: must not be empty",
            ),
        ];
        for (body, expected) in cases {
            let request: ChatRequest = parse_body(body.as_bytes()).unwrap();
            assert_eq!(request.validate().unwrap_err().message(), expected);
        }
    }

    #[test]
    fn unknown_part_types_pass_through_verbatim() {
        let body = r#"{"role":"user","content":[{"type":"input_video","video":{"url":"x"}},{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}"#;
        let message: ChatMessage = serde_json::from_str(body).unwrap();
        let Some(MessageContent::Parts(parts)) = &message.content else {
            panic!("parts expected");
        };
        assert_eq!(parts[0].kind(), "input_video");
        let again = serde_json::to_value(&parts[0]).unwrap();
        assert_eq!(again["video"]["url"], "x");
    }

    #[test]
    fn tool_choice_and_stop_forms() {
        let choice: ToolChoice =
            serde_json::from_str(r#"{"type":"function","function":{"name":"f"}}"#).unwrap();
        assert_eq!(choice, ToolChoice::Function { name: "f".into() });
        assert_eq!(
            serde_json::to_string(&choice).unwrap(),
            r#"{"type":"function","function":{"name":"f"}}"#
        );
        let stop: Stop = serde_json::from_str(r#""END""#).unwrap();
        assert_eq!(stop, Stop(vec!["END".into()]));
    }

    #[test]
    fn response_with_tool_calls_and_cached_tokens_parses() {
        let body = r#"{
          "id": "chatcmpl-abc", "object": "chat.completion", "created": 1726012687,
          "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1", "service_tier": "default",
          "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": null,
              "tool_calls": [{"id": "call_2", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
          "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        }"#;
        let response: ChatCompletion = serde_json::from_str(body).unwrap();
        assert_eq!(
            response.choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        let usage = response.usage.unwrap();
        assert_eq!(usage.cached_tokens(), 64);
        assert_eq!(usage.prompt_tokens, 82);
    }

    #[test]
    fn unknown_finish_reasons_are_kept() {
        let reason: FinishReason = serde_json::from_str(r#""abort""#).unwrap();
        assert_eq!(reason, FinishReason::Other("abort".into()));
        assert_eq!(serde_json::to_string(&reason).unwrap(), r#""abort""#);
    }

    #[test]
    fn error_body_has_openai_shape() {
        let body = error_body(
            "slow down",
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            None,
        );
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
    }

    #[test]
    fn embeddings_request_forms() {
        for body in [
            r#"{"model":"e","input":"a"}"#,
            r#"{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":256}"#,
            r#"{"model":"e","input":[1,2,3]}"#,
            r#"{"model":"e","input":[[1,2],[3]]}"#,
        ] {
            let request: EmbeddingsRequest = parse_body(body.as_bytes()).unwrap();
            request.validate().unwrap();
        }
        let empty: EmbeddingsRequest = parse_body(br#"{"model":"e","input":[]}"#).unwrap();
        assert_eq!(
            empty.validate().unwrap_err().message(),
            "input: must not be empty"
        );
    }
}
