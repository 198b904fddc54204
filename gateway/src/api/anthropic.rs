//! Anthropic Messages API wire types: requests, responses, stream events and error bodies.
//!
//! Content blocks keep unknown fields (`cache_control`, `citations`, …) and unknown block types verbatim.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{JsonMap, tag_of, take_field, take_optional};

/// The `anthropic-version` the gateway speaks upstream and documents to clients.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// `thinking`, `service_tier`, `container`, `mcp_servers`, … kept for pass-through.
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl MessagesRequest {
    /// Whether the client asked for a streamed response.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Checks the rules serde cannot express; the message names the field.
    pub fn validate(&self) -> Result<(), super::RequestError> {
        if self.model.is_empty() {
            return Err(super::RequestError::new("model: must not be empty"));
        }
        if self.messages.is_empty() {
            return Err(super::RequestError::new("messages: must not be empty"));
        }
        if self.max_tokens == 0 {
            return Err(super::RequestError::new("max_tokens: must be at least 1"));
        }
        Ok(())
    }
}

/// Anthropic roles: there is no system role in `messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Assistant,
}

/// One entry of `messages`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

/// A string (shorthand for one text block) or an array of blocks; used by `content`, `system` and tool results.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => serializer.serialize_str(text),
            Content::Blocks(blocks) => blocks.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Content::Text(text))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Content::Blocks)
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// A content block. `extra` keeps the block's other fields (`cache_control`, `citations`, `title`, …).
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text {
        text: String,
        extra: JsonMap,
    },
    Image {
        source: MediaSource,
        extra: JsonMap,
    },
    Document {
        source: MediaSource,
        extra: JsonMap,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        extra: JsonMap,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<Content>,
        is_error: Option<bool>,
        extra: JsonMap,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// Server-tool blocks and block types newer than this gateway, kept verbatim.
    Other(JsonMap),
}

impl ContentBlock {
    /// A text block without extra fields.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text {
            text: text.into(),
            extra: JsonMap::new(),
        }
    }

    /// The block's `type` tag.
    pub fn kind(&self) -> &str {
        match self {
            ContentBlock::Text { .. } => "text",
            ContentBlock::Image { .. } => "image",
            ContentBlock::Document { .. } => "document",
            ContentBlock::ToolUse { .. } => "tool_use",
            ContentBlock::ToolResult { .. } => "tool_result",
            ContentBlock::Thinking { .. } => "thinking",
            ContentBlock::RedactedThinking { .. } => "redacted_thinking",
            ContentBlock::Other(object) => object.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let ContentBlock::Other(object) = self {
            return object.serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind())?;
        let extra = match self {
            ContentBlock::Text { text, extra } => {
                map.serialize_entry("text", text)?;
                Some(extra)
            }
            ContentBlock::Image { source, extra } | ContentBlock::Document { source, extra } => {
                map.serialize_entry("source", source)?;
                Some(extra)
            }
            ContentBlock::ToolUse {
                id,
                name,
                input,
                extra,
            } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("name", name)?;
                map.serialize_entry("input", input)?;
                Some(extra)
            }
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                extra,
            } => {
                map.serialize_entry("tool_use_id", tool_use_id)?;
                if let Some(content) = content {
                    map.serialize_entry("content", content)?;
                }
                if let Some(is_error) = is_error {
                    map.serialize_entry("is_error", is_error)?;
                }
                Some(extra)
            }
            ContentBlock::Thinking {
                thinking,
                signature,
            } => {
                map.serialize_entry("thinking", thinking)?;
                map.serialize_entry("signature", signature)?;
                None
            }
            ContentBlock::RedactedThinking { data } => {
                map.serialize_entry("data", data)?;
                None
            }
            ContentBlock::Other(_) => None,
        };
        for (key, value) in extra.into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut object = JsonMap::deserialize(deserializer)?;
        let kind = tag_of::<D::Error>(&object)?;
        let block = match kind {
            "text" => ContentBlock::Text {
                text: take_field(&mut object, "text")?,
                extra: without_type(object),
            },
            "image" => ContentBlock::Image {
                source: take_field(&mut object, "source")?,
                extra: without_type(object),
            },
            "document" => ContentBlock::Document {
                source: take_field(&mut object, "source")?,
                extra: without_type(object),
            },
            "tool_use" => ContentBlock::ToolUse {
                id: take_field(&mut object, "id")?,
                name: take_field(&mut object, "name")?,
                input: take_optional(&mut object, "input")?
                    .unwrap_or_else(|| Value::Object(JsonMap::new())),
                extra: without_type(object),
            },
            "tool_result" => ContentBlock::ToolResult {
                tool_use_id: take_field(&mut object, "tool_use_id")?,
                content: take_optional(&mut object, "content")?,
                is_error: take_optional(&mut object, "is_error")?,
                extra: without_type(object),
            },
            "thinking" => ContentBlock::Thinking {
                thinking: take_field(&mut object, "thinking")?,
                signature: take_optional(&mut object, "signature")?.unwrap_or_default(),
            },
            "redacted_thinking" => ContentBlock::RedactedThinking {
                data: take_field(&mut object, "data")?,
            },
            _ => ContentBlock::Other(object),
        };
        Ok(block)
    }
}

fn without_type(mut object: JsonMap) -> JsonMap {
    object.remove("type");
    object
}

/// `source` of an image or document block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// Plain-text documents.
    Text {
        media_type: String,
        data: String,
    },
    /// `file`, `content` and newer source kinds, kept verbatim.
    #[serde(untagged)]
    Other(JsonMap),
}

/// A tool definition. Server tools (`web_search_…`, `bash_…`) carry a `type` and no `input_schema`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `cache_control` and server-tool settings.
    #[serde(flatten)]
    pub extra: JsonMap,
}

impl Tool {
    /// Whether this is an ordinary client-executed tool (as opposed to an Anthropic server tool).
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

impl ToolChoice {
    /// Whether parallel tool use was switched off.
    pub fn disables_parallel_tool_use(&self) -> bool {
        match self {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | ToolChoice::Any {
                disable_parallel_tool_use,
            }
            | ToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            } => disable_parallel_tool_use.unwrap_or(false),
            ToolChoice::None => false,
        }
    }
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// A non-streaming Messages response (also the `message` of `message_start`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct MessagesResponse {
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

fn message_type() -> String {
    "message".to_owned()
}

/// Why generation stopped; new values may appear, so unknown ones are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
    ModelContextWindowExceeded,
    Other(String),
}

impl StopReason {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::PauseTurn => "pause_turn",
            StopReason::Refusal => "refusal",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
            StopReason::Other(other) => other,
        }
    }

    /// Parses a wire value.
    pub fn from_wire(value: &str) -> Self {
        match value {
            "end_turn" => StopReason::EndTurn,
            "max_tokens" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "tool_use" => StopReason::ToolUse,
            "pause_turn" => StopReason::PauseTurn,
            "refusal" => StopReason::Refusal,
            "model_context_window_exceeded" => StopReason::ModelContextWindowExceeded,
            other => StopReason::Other(other.to_owned()),
        }
    }
}

impl Serialize for StopReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReasonVisitor;

        impl Visitor<'_> for ReasonVisitor {
            type Value = StopReason;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a stop reason string")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(StopReason::from_wire(value))
            }
        }

        deserializer.deserialize_str(ReasonVisitor)
    }
}

/// Usage. The three input counters are disjoint: total input is their sum.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One named SSE event of a Messages stream (the `data` JSON; its `type` equals the event name).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: DeltaUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorDetail,
    },
}

/// `content_block_delta.delta`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    CitationsDelta {
        citation: Value,
    },
    /// Delta types newer than this gateway.
    #[serde(untagged)]
    Other(JsonMap),
}

/// `message_delta.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// `message_delta.usage`: cumulative counts; input counters appear only on newer API versions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct DeltaUsage {
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorResponse {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorDetail,
}

/// The inner error object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// Serializes an Anthropic error body.
pub fn error_body(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&BorrowedError::new(kind, message)).unwrap_or_default()
}

/// An error body that borrows its strings (used by the stream encoder too).
#[derive(Serialize)]
pub(crate) struct BorrowedError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: BorrowedErrorDetail<'a>,
}

#[derive(Serialize)]
struct BorrowedErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl<'a> BorrowedError<'a> {
    pub(crate) fn new(kind: &'a str, message: &'a str) -> Self {
        Self {
            kind: "error",
            error: BorrowedErrorDetail { kind, message },
        }
    }
}

/// The Anthropic `error.type` conventionally paired with an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::json::parse_body;
    use pretty_assertions::assert_eq;

    pub(crate) const FULL_REQUEST: &str = r#"{
      "model": "claude-sonnet-4-5", "max_tokens": 1024,
      "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "Weather in Paris?"},
          {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
        {"role": "assistant", "content": [
          {"type": "text", "text": "Checking."},
          {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C, sunny", "is_error": false}]}
      ],
      "tools": [{"name": "get_weather", "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
      "tool_choice": {"type": "auto", "disable_parallel_tool_use": false},
      "stop_sequences": ["END"], "temperature": 0.7, "top_p": 0.9, "top_k": 40,
      "stream": true, "metadata": {"user_id": "u-123"},
      "thinking": {"type": "enabled", "budget_tokens": 2000}
    }"#;

    #[test]
    fn full_request_round_trips() {
        let request: MessagesRequest = parse_body(FULL_REQUEST.as_bytes()).unwrap();
        request.validate().unwrap();
        assert!(request.is_stream());
        assert!(request.extra.contains_key("thinking"));
        let Content::Blocks(blocks) = &request.messages[2].content else {
            panic!("blocks expected");
        };
        assert_eq!(blocks[0].kind(), "tool_result");
        let original: Value = serde_json::from_str(FULL_REQUEST).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), original);
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        let cases = [
            (
                r#"{"model":"c","messages":[{"role":"user","content":"hi"}]}"#,
                "max_tokens: missing field",
            ),
            (
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"system","content":"hi"}]}"#,
                "messages[0].role: unknown variant `system`, expected `user` or `assistant`",
            ),
            (
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"x"}]}]}"#,
                "messages[0].content[0].name: missing field",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_body::<MessagesRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(error.message(), expected, "body {body}");
        }
    }

    #[test]
    fn unknown_blocks_and_events_fields_survive() {
        let block: ContentBlock = serde_json::from_str(
            r#"{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"x"}}"#,
        )
        .unwrap();
        assert_eq!(block.kind(), "server_tool_use");
        let event: StreamEvent = serde_json::from_str(
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":31}}"#,
        )
        .unwrap();
        assert_eq!(
            event,
            StreamEvent::MessageDelta {
                delta: MessageDeltaBody {
                    stop_reason: Some(StopReason::ToolUse),
                    stop_sequence: None
                },
                usage: DeltaUsage {
                    output_tokens: 31,
                    ..DeltaUsage::default()
                }
            }
        );
    }

    #[test]
    fn error_body_has_anthropic_shape() {
        let value: Value =
            serde_json::from_slice(&error_body("overloaded_error", "Overloaded")).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
        );
        assert_eq!(error_type_for_status(429), "rate_limit_error");
        assert_eq!(error_type_for_status(422), "invalid_request_error");
    }
}
