//! Rebuilds a complete `chat.completion` from a canonical stream, so a streamed answer can be cached and
//! later served to non-streaming clients too.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::json::JsonMap;
use crate::api::openai::{
    ChatCompletion, ChatCompletionChunk, Choice, FinishReason, FunctionCall,
    OBJECT_CHAT_COMPLETION, ResponseMessage, Role, ToolCall, ToolKind, Usage,
};

/// Accumulates chunks; [`StreamAssembler::finish`] yields the completion once the stream ended.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    id: String,
    created: u64,
    model: String,
    system_fingerprint: Option<String>,
    service_tier: Option<String>,
    choices: BTreeMap<u32, ChoiceSoFar>,
    usage: Option<Usage>,
}

#[derive(Debug, Default)]
struct ChoiceSoFar {
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
    tool_calls: BTreeMap<u32, ToolCall>,
    finish_reason: Option<FinishReason>,
    /// `logprobs.content` / `logprobs.refusal` entries, concatenated across chunks.
    logprobs: Option<JsonMap>,
}

impl StreamAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one chunk.
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.created = chunk.created;
            self.model.clone_from(&chunk.model);
        }
        if chunk.system_fingerprint.is_some() {
            self.system_fingerprint
                .clone_from(&chunk.system_fingerprint);
        }
        if chunk.service_tier.is_some() {
            self.service_tier.clone_from(&chunk.service_tier);
        }
        if chunk.usage.is_some() {
            self.usage.clone_from(&chunk.usage);
        }
        for choice in &chunk.choices {
            let so_far = self.choices.entry(choice.index).or_default();
            let delta = &choice.delta;
            append(&mut so_far.content, delta.content.as_deref());
            append(&mut so_far.refusal, delta.refusal.as_deref());
            append(&mut so_far.reasoning, delta.reasoning_content.as_deref());
            for fragment in delta.tool_calls.iter().flatten() {
                let call = so_far.tool_calls.entry(fragment.index).or_default();
                if let Some(id) = &fragment.id {
                    call.id.clone_from(id);
                }
                if let Some(kind) = fragment.kind {
                    call.kind = kind;
                }
                if let Some(function) = &fragment.function {
                    if let Some(name) = &function.name {
                        call.function.name.push_str(name);
                    }
                    if let Some(arguments) = &function.arguments {
                        call.function.arguments.push_str(arguments);
                    }
                }
            }
            if let Some(Value::Object(logprobs)) = &choice.logprobs {
                merge_logprobs(so_far.logprobs.get_or_insert_with(JsonMap::new), logprobs);
            }
            if choice.finish_reason.is_some() {
                so_far.finish_reason.clone_from(&choice.finish_reason);
            }
        }
    }

    /// The complete response, or `None` if no choice has finished (a cut stream is never cached).
    pub fn finish(self) -> Option<ChatCompletion> {
        if self.choices.is_empty()
            || self
                .choices
                .values()
                .any(|choice| choice.finish_reason.is_none())
        {
            return None;
        }
        let choices = self
            .choices
            .into_iter()
            .map(|(index, so_far)| {
                let mut extra = JsonMap::new();
                if let Some(reasoning) = so_far.reasoning {
                    extra.insert("reasoning_content".to_owned(), Value::String(reasoning));
                }
                let tool_calls: Vec<ToolCall> = so_far
                    .tool_calls
                    .into_values()
                    .map(|call| ToolCall {
                        kind: ToolKind::Function,
                        function: FunctionCall {
                            name: call.function.name,
                            arguments: call.function.arguments,
                        },
                        ..call
                    })
                    .collect();
                Choice {
                    index,
                    message: ResponseMessage {
                        role: Role::Assistant,
                        content: so_far.content,
                        refusal: so_far.refusal,
                        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                        extra,
                    },
                    finish_reason: so_far.finish_reason,
                    logprobs: so_far.logprobs.map(Value::Object),
                    extra: JsonMap::new(),
                }
            })
            .collect();
        Some(ChatCompletion {
            id: self.id,
            object: OBJECT_CHAT_COMPLETION.to_owned(),
            created: self.created,
            model: self.model,
            choices,
            usage: self.usage,
            system_fingerprint: self.system_fingerprint,
            service_tier: self.service_tier,
            extra: JsonMap::new(),
        })
    }
}

fn append(slot: &mut Option<String>, fragment: Option<&str>) {
    if let Some(fragment) = fragment {
        slot.get_or_insert_with(String::new).push_str(fragment);
    }
}

/// Concatenates the token arrays of chunk logprobs (`{"content": [...], "refusal": [...]}`).
fn merge_logprobs(into: &mut JsonMap, chunk: &JsonMap) {
    for (field, value) in chunk {
        match (into.get_mut(field), value) {
            (Some(Value::Array(existing)), Value::Array(more)) => {
                existing.extend(more.iter().cloned())
            }
            (Some(_), Value::Null) => {}
            _ => {
                into.insert(field.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::encode::{AnthropicSseEncoder, OpenAiSseEncoder};
    use crate::cache::replay_chunks;
    use crate::providers::StreamItem;
    use pretty_assertions::assert_eq;

    fn completion() -> ChatCompletion {
        serde_json::from_value(serde_json::json!({
            "id": "chatcmpl-42", "object": "chat.completion", "created": 1_726_012_687u64,
            "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Let me check the weather in Paris and Rome.",
                  "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                  ]},
                 "logprobs": {"content": [{"token": "Let", "logprob": -0.1, "bytes": [76, 101, 116], "top_logprobs": []}]},
                 "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "Bonjour — 你好!", "reasoning_content": "greet"},
                 "logprobs": null, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                      "prompt_tokens_details": {"cached_tokens": 64}}
        }))
        .unwrap()
    }

    #[test]
    fn replay_then_assemble_gives_back_the_completion() {
        let original = completion();
        let mut assembler = StreamAssembler::new();
        for chunk in replay_chunks(&original) {
            assembler.push(&chunk);
        }
        assert_eq!(assembler.finish().unwrap(), original);
    }

    /// The replayed stream, encoded by the OpenAI surface's own SSE encoder and decoded as a client would,
    /// carries the same content, tool calls, finish reasons and usage as the non-streamed response.
    #[test]
    fn replayed_sse_is_content_equivalent_to_the_json_response() {
        let original = completion();
        let mut encoder = OpenAiSseEncoder::new(true);
        let mut bytes = Vec::new();
        for chunk in replay_chunks(&original) {
            encoder.encode(&StreamItem::Chunk(chunk), &mut bytes);
        }
        encoder.finish(&mut bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let mut assembler = StreamAssembler::new();
        for event in text.split("\n\n").filter(|event| !event.is_empty()) {
            let data = event.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                continue;
            }
            let chunk: ChatCompletionChunk = serde_json::from_str(data).unwrap();
            assert_eq!(chunk.object, "chat.completion.chunk");
            assembler.push(&chunk);
        }
        let streamed = assembler.finish().unwrap();
        assert_eq!(streamed.choices, original.choices);
        assert_eq!(streamed.usage, original.usage);
        assert_eq!(
            (streamed.id.as_str(), streamed.model.as_str()),
            (original.id.as_str(), original.model.as_str())
        );
    }

    #[test]
    fn replay_without_usage_request_hides_the_usage_chunk() {
        let mut encoder = OpenAiSseEncoder::new(false);
        let mut bytes = Vec::new();
        for chunk in replay_chunks(&completion()) {
            encoder.encode(&StreamItem::Chunk(chunk), &mut bytes);
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("\"usage\""), "{text}");
    }

    #[test]
    fn replay_encodes_on_the_anthropic_surface() {
        let mut encoder = AnthropicSseEncoder::new();
        let mut bytes = Vec::new();
        for chunk in replay_chunks(&completion()) {
            encoder.encode(&StreamItem::Chunk(chunk), &mut bytes);
        }
        encoder.finish(&mut bytes);
        let text = String::from_utf8(bytes).unwrap();
        let mut streamed_text = String::new();
        let mut tool_json = String::new();
        for event in text.split("\n\n").filter(|event| !event.is_empty()) {
            let data: Value =
                serde_json::from_str(event.split_once("\ndata: ").unwrap().1).unwrap();
            match data["delta"]["type"].as_str() {
                Some("text_delta") => streamed_text += data["delta"]["text"].as_str().unwrap(),
                Some("input_json_delta") => {
                    tool_json += data["delta"]["partial_json"].as_str().unwrap()
                }
                _ => {}
            }
        }
        assert_eq!(streamed_text, "Let me check the weather in Paris and Rome.");
        assert_eq!(tool_json, "{\"city\":\"Paris\"}{\"city\":\"Rome\"}");
        assert!(text.contains("\"stop_reason\":\"tool_use\""), "{text}");
        assert!(text.contains("\"output_tokens\":17"), "{text}");
    }

    #[test]
    fn unfinished_streams_are_not_assembled() {
        let mut assembler = StreamAssembler::new();
        let chunks = replay_chunks(&completion());
        for chunk in &chunks[..3] {
            assembler.push(chunk);
        }
        assert!(assembler.finish().is_none());
        assert!(StreamAssembler::new().finish().is_none());
    }
}
