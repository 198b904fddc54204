//! Outbound encoders: canonical responses and translated streams → OpenAI or Anthropic wire bytes.

use serde::Serialize;

use super::anthropic;
use super::anthropic_bridge::{response_from_canonical, stop_reason};
use super::openai::{ChatCompletion, ChatCompletionChunk, ChunkChoice, Usage};
use crate::providers::usage::to_anthropic;
use crate::providers::{ClientError, StreamItem};

/// A non-streaming response on the OpenAI surface.
pub fn openai_response(completion: &ChatCompletion) -> Vec<u8> {
    serde_json::to_vec(completion).unwrap_or_default()
}

/// A non-streaming response on the Anthropic surface.
pub fn anthropic_response(completion: ChatCompletion) -> Vec<u8> {
    serde_json::to_vec(&response_from_canonical(completion)).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// OpenAI SSE
// ---------------------------------------------------------------------------

/// Writes `data: <chunk>\n\n` events and the closing `data: [DONE]`.
#[derive(Debug)]
pub struct OpenAiSseEncoder {
    include_usage: bool,
    finished: bool,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'a str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
}

impl OpenAiSseEncoder {
    /// `include_usage`: the client's `stream_options.include_usage` (see `ChatRequest::wants_stream_usage`).
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            finished: false,
        }
    }

    /// Encodes one item; the usage chunk is dropped unless the client asked for it. An error ends the stream.
    pub fn encode(&mut self, item: &StreamItem, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        match item {
            StreamItem::Chunk(chunk) => self.encode_chunk(chunk, out),
            StreamItem::Error(error) => self.encode_error(&error.client_error(), out),
        }
    }

    fn encode_chunk(&self, chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
        if !self.include_usage && chunk.choices.is_empty() {
            return;
        }
        let view = ChunkOut {
            id: &chunk.id,
            object: &chunk.object,
            created: chunk.created,
            model: &chunk.model,
            choices: &chunk.choices,
            usage: chunk.usage.as_ref().filter(|_| self.include_usage),
            system_fingerprint: chunk.system_fingerprint.as_deref(),
            service_tier: chunk.service_tier.as_deref(),
        };
        out.extend_from_slice(b"data: ");
        if serde_json::to_writer(&mut *out, &view).is_err() {
            return;
        }
        out.extend_from_slice(b"\n\n");
    }

    /// Writes `data: {"error":…}` (what the OpenAI SDKs raise on) and ends the stream without `[DONE]`.
    pub fn encode_error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.openai_body());
        out.extend_from_slice(b"\n\n");
        self.finished = true;
    }

    /// Writes `data: [DONE]` after a completed stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.finished = true;
    }
}

// ---------------------------------------------------------------------------
// Anthropic SSE
// ---------------------------------------------------------------------------

/// The content block currently open on the Anthropic stream (blocks are strictly sequential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { index: u32 },
    Tool { index: u32, call: u32 },
}

/// Re-frames canonical chunks as the Anthropic event sequence: `message_start`, per block
/// `content_block_start`/`content_block_delta`/`content_block_stop`, then `message_delta` (stop reason and
/// cumulative usage, input included) and `message_stop`. Only choice 0 is used.
#[derive(Debug, Default)]
pub struct AnthropicSseEncoder {
    started: bool,
    finished: bool,
    open: Option<OpenBlock>,
    next_block: u32,
    /// Tool-call indices whose block was already closed; late fragments for them cannot be delivered.
    closed_calls: Vec<u32>,
    stop: Option<anthropic::StopReason>,
    usage: Option<Usage>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: StartMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockStart<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDeltaOut<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaOut<'a>,
        usage: anthropic::Usage,
    },
    MessageStop,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [u8; 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: anthropic::Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDeltaOut<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDeltaOut<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'static str>,
}

fn write_event(out: &mut Vec<u8>, event: &Event<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut *out, event).is_ok() {
        out.extend_from_slice(b"\n\n");
    }
}

impl AnthropicSseEncoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes one item. An error item becomes `event: error` and ends the stream.
    pub fn encode(&mut self, item: &StreamItem, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        match item {
            StreamItem::Chunk(chunk) => self.encode_chunk(chunk, out),
            StreamItem::Error(error) => self.encode_error(&error.client_error(), out),
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        // Input tokens are not known yet on most upstreams: the real counts follow in `message_delta`.
        write_event(
            out,
            &Event::MessageStart {
                message: StartMessage {
                    id,
                    kind: "message",
                    role: "assistant",
                    model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: anthropic::Usage::default(),
                },
            },
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open.take() {
            let index = match block {
                OpenBlock::Text { index } => index,
                OpenBlock::Tool { index, call } => {
                    self.closed_calls.push(call);
                    index
                }
            };
            write_event(out, &Event::ContentBlockStop { index });
        }
    }

    fn open_block(&mut self, block: BlockStart<'_>, out: &mut Vec<u8>) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        write_event(
            out,
            &Event::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn encode_chunk(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
        self.start(&chunk.id, &chunk.model, out);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.choices.iter().find(|choice| choice.index == 0) else {
            return;
        };
        let delta = &choice.delta;
        if let Some(text) = delta.content.as_deref().filter(|text| !text.is_empty()) {
            let index = match self.open {
                Some(OpenBlock::Text { index }) => index,
                _ => {
                    let index = self.open_block(BlockStart::Text { text: "" }, out);
                    self.open = Some(OpenBlock::Text { index });
                    index
                }
            };
            write_event(
                out,
                &Event::ContentBlockDelta {
                    index,
                    delta: BlockDeltaOut::TextDelta { text },
                },
            );
        }
        for call in delta.tool_calls.iter().flatten() {
            let arguments = call
                .function
                .as_ref()
                .and_then(|function| function.arguments.as_deref())
                .unwrap_or_default();
            let index = match self.open {
                Some(OpenBlock::Tool { index, call: open }) if open == call.index => index,
                _ if self.closed_calls.contains(&call.index) => {
                    tracing::warn!(
                        tool_call = call.index,
                        "dropping a late tool-call fragment on the anthropic stream"
                    );
                    continue;
                }
                _ => {
                    let fallback_id = format!("toolu_{}", call.index);
                    let id = call.id.as_deref().unwrap_or(&fallback_id);
                    let name = call
                        .function
                        .as_ref()
                        .and_then(|function| function.name.as_deref())
                        .unwrap_or_default();
                    let index = self.open_block(
                        BlockStart::ToolUse {
                            id,
                            name,
                            input: EmptyObject {},
                        },
                        out,
                    );
                    self.open = Some(OpenBlock::Tool {
                        index,
                        call: call.index,
                    });
                    index
                }
            };
            if !arguments.is_empty() {
                write_event(
                    out,
                    &Event::ContentBlockDelta {
                        index,
                        delta: BlockDeltaOut::InputJsonDelta {
                            partial_json: arguments,
                        },
                    },
                );
            }
        }
        if let Some(finish) = &choice.finish_reason {
            self.stop = Some(stop_reason(finish));
            self.close_block(out);
        }
    }

    /// Writes `event: error` and ends the stream.
    pub fn encode_error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&error.anthropic_body());
        out.extend_from_slice(b"\n\n");
        self.finished = true;
    }

    /// After a completed upstream stream: closes the open block, writes `message_delta` and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start("", "", out);
        self.close_block(out);
        let stop = self.stop.take().unwrap_or(anthropic::StopReason::EndTurn);
        let usage = self.usage.as_ref().map(to_anthropic).unwrap_or_default();
        write_event(
            out,
            &Event::MessageDelta {
                delta: MessageDeltaOut {
                    stop_reason: stop.as_str(),
                    stop_sequence: None,
                },
                usage,
            },
        );
        write_event(out, &Event::MessageStop);
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::anthropic::{BlockDelta, ContentBlock, StreamEvent};
    use crate::providers::sse::SseParser;
    use crate::providers::{StreamTranslator, UpstreamError, UpstreamErrorKind};
    use pretty_assertions::assert_eq;
    use serde_json::Value;

    fn translate(provider: crate::providers::ProviderKind, stream: &str) -> Vec<StreamItem> {
        let mut translator = StreamTranslator::new(provider, 1);
        let mut items = Vec::new();
        // Feed in 7-byte pieces to exercise boundaries.
        for piece in stream.as_bytes().chunks(7) {
            translator.feed(piece, &mut items);
        }
        translator.finish(&mut items);
        items
    }

    fn openai_stream(items: &[StreamItem], include_usage: bool) -> String {
        let mut encoder = OpenAiSseEncoder::new(include_usage);
        let mut out = Vec::new();
        for item in items {
            encoder.encode(item, &mut out);
        }
        encoder.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn anthropic_events(items: &[StreamItem]) -> Vec<(String, Value)> {
        let mut encoder = AnthropicSseEncoder::new();
        let mut out = Vec::new();
        for item in items {
            encoder.encode(item, &mut out);
        }
        encoder.finish(&mut out);
        let mut events = Vec::new();
        SseParser::new()
            .feed(&out, |event| {
                events.push((
                    event.event.to_owned(),
                    serde_json::from_str(event.data).unwrap(),
                ));
            })
            .unwrap();
        events
    }

    #[test]
    fn openai_stream_hides_usage_unless_asked() {
        let items = translate(
            crate::providers::ProviderKind::OpenAi,
            crate::providers::openai::tests::STREAM,
        );
        let without = openai_stream(&items, false);
        assert!(!without.contains("\"usage\""));
        assert!(without.ends_with("data: [DONE]\n\n"));
        assert_eq!(without.matches("data: ").count(), 7);
        let with = openai_stream(&items, true);
        assert!(with.contains("\"usage\":{\"prompt_tokens\":82"));
        assert_eq!(with.matches("data: ").count(), 8);
        // Every event but [DONE] is a chunk the SDKs can parse.
        for line in with.lines().filter_map(|line| line.strip_prefix("data: ")) {
            if line != "[DONE]" {
                let chunk: ChatCompletionChunk = serde_json::from_str(line).unwrap();
                assert_eq!(chunk.object, "chat.completion.chunk");
            }
        }
    }

    #[test]
    fn openai_stream_error_ends_without_done() {
        let items = vec![StreamItem::Error(UpstreamError::new(
            UpstreamErrorKind::Overloaded,
            200,
            "secret provider text",
        ))];
        let text = openai_stream(&items, false);
        assert!(!text.contains("secret provider text"));
        assert!(!text.contains("[DONE]"));
        let body: Value =
            serde_json::from_str(text.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "upstream_overloaded");
    }

    /// The Anthropic event sequence a client sees for an OpenAI upstream that streams text and a tool call.
    #[test]
    fn anthropic_stream_from_openai_upstream() {
        let items = translate(
            crate::providers::ProviderKind::OpenAi,
            crate::providers::openai::tests::STREAM,
        );
        let events = anthropic_events(&items);
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str());
            // Every event must parse as the SDK's type.
            let _: StreamEvent = serde_json::from_value(data.clone()).unwrap();
        }
        assert_eq!(
            events[1].1["content_block"],
            serde_json::json!({"type":"text","text":""})
        );
        assert_eq!(events[4].1["index"], 1);
        assert_eq!(
            events[4].1["content_block"],
            serde_json::json!({"type":"tool_use","id":"call_2","name":"get_weather","input":{}})
        );
        let partial: String = events[5..7]
            .iter()
            .map(|(_, data)| data["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(partial, "{\"city\":\"Rome\"}");
        assert_eq!(
            events[8].1,
            serde_json::json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
              "usage":{"input_tokens":18,"output_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":64}})
        );
    }

    /// Anthropic upstream → canonical → Anthropic surface keeps the text, the tool call and the usage.
    #[test]
    fn anthropic_stream_round_trips_through_the_canonical_model() {
        let items = translate(
            crate::providers::ProviderKind::Anthropic,
            crate::providers::anthropic::tests::STREAM,
        );
        let events = anthropic_events(&items);
        let parsed: Vec<StreamEvent> = events
            .iter()
            .map(|(_, data)| serde_json::from_value(data.clone()).unwrap())
            .collect();
        let text: String = parsed
            .iter()
            .filter_map(|event| match event {
                StreamEvent::ContentBlockDelta {
                    delta: BlockDelta::TextDelta { text },
                    ..
                } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Checking \u{e9}t\u{e9} \u{1f326}.");
        assert!(parsed.iter().any(|event| matches!(event,
            StreamEvent::ContentBlockStart { index: 1, content_block: ContentBlock::ToolUse { id, name, .. } }
                if id == "toolu_02" && name == "get_weather")));
        let StreamEvent::MessageDelta { usage, delta } = &parsed[parsed.len() - 2] else {
            panic!("message_delta expected");
        };
        assert_eq!(delta.stop_reason, Some(anthropic::StopReason::ToolUse));
        assert_eq!(
            (
                usage.output_tokens,
                usage.input_tokens,
                usage.cache_read_input_tokens
            ),
            (31, Some(472), Some(100))
        );
    }

    #[test]
    fn anthropic_stream_error_event() {
        let mut encoder = AnthropicSseEncoder::new();
        let mut out = Vec::new();
        encoder.encode(
            &StreamItem::Error(UpstreamError::new(
                UpstreamErrorKind::RateLimited,
                200,
                "provider text",
            )),
            &mut out,
        );
        encoder.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"The upstream provider's rate limit was reached; retry later.\"}}\n\n"
        );
    }

    #[test]
    fn non_streaming_encoders() {
        let completion: ChatCompletion = serde_json::from_str(
            r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        let openai: Value = serde_json::from_slice(&openai_response(&completion)).unwrap();
        assert_eq!(openai["choices"][0]["message"]["content"], "hi");
        let anthropic: Value = serde_json::from_slice(&anthropic_response(completion)).unwrap();
        assert_eq!(anthropic["stop_reason"], "max_tokens");
        assert_eq!(anthropic["content"][0]["text"], "hi");
    }
}
