//! Turns a stored completion back into the canonical stream a client would have seen, so one cache entry
//! serves streaming and non-streaming requests on either surface.

use serde_json::Value;

use crate::api::openai::{
    ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta,
    OBJECT_CHAT_COMPLETION_CHUNK, Role, ToolCallDelta,
};

/// The `chat.completion.chunk` sequence equivalent in content to `completion`: per choice (in index order) a
/// role chunk, then reasoning, content (with its logprobs), refusal and one chunk per tool call, then the
/// finish reason; finally the usage chunk (empty `choices`) when the completion has usage — the outbound
/// encoder drops it unless the client asked for it, as for a live stream.
///
/// Feed the chunks as `StreamItem::Chunk` to the surface's SSE encoder and finish it.
pub fn replay_chunks(completion: &ChatCompletion) -> Vec<ChatCompletionChunk> {
    let envelope = |choices: Vec<ChunkChoice>| ChatCompletionChunk {
        id: completion.id.clone(),
        object: OBJECT_CHAT_COMPLETION_CHUNK.to_owned(),
        created: completion.created,
        model: completion.model.clone(),
        choices,
        usage: None,
        system_fingerprint: completion.system_fingerprint.clone(),
        service_tier: completion.service_tier.clone(),
    };
    let one = |index: u32, delta: Delta| {
        envelope(vec![ChunkChoice {
            index,
            delta,
            ..ChunkChoice::default()
        }])
    };
    let mut choices: Vec<_> = completion.choices.iter().collect();
    choices.sort_by_key(|choice| choice.index);
    let mut chunks = Vec::new();
    for choice in choices {
        let message = &choice.message;
        chunks.push(one(
            choice.index,
            Delta {
                role: Some(Role::Assistant),
                ..Delta::default()
            },
        ));
        if let Some(Value::String(reasoning)) = message.extra.get("reasoning_content") {
            chunks.push(one(
                choice.index,
                Delta {
                    reasoning_content: Some(reasoning.clone()),
                    ..Delta::default()
                },
            ));
        }
        if let Some(content) = message
            .content
            .as_ref()
            .filter(|content| !content.is_empty())
        {
            let mut chunk = one(
                choice.index,
                Delta {
                    content: Some(content.clone()),
                    ..Delta::default()
                },
            );
            chunk.choices[0].logprobs = choice
                .logprobs
                .clone()
                .filter(|logprobs| !logprobs.is_null());
            chunks.push(chunk);
        }
        if let Some(refusal) = &message.refusal {
            chunks.push(one(
                choice.index,
                Delta {
                    refusal: Some(refusal.clone()),
                    ..Delta::default()
                },
            ));
        }
        for (position, call) in message.tool_calls.iter().flatten().enumerate() {
            let delta = ToolCallDelta {
                index: u32::try_from(position).unwrap_or(u32::MAX),
                id: Some(call.id.clone()),
                kind: Some(call.kind),
                function: Some(FunctionCallDelta {
                    name: Some(call.function.name.clone()),
                    arguments: Some(call.function.arguments.clone()),
                }),
            };
            chunks.push(one(
                choice.index,
                Delta {
                    tool_calls: Some(vec![delta]),
                    ..Delta::default()
                },
            ));
        }
        let mut finish = one(choice.index, Delta::default());
        finish.choices[0].finish_reason = choice.finish_reason.clone();
        chunks.push(finish);
    }
    if let Some(usage) = &completion.usage {
        let mut last = envelope(Vec::new());
        last.usage = Some(usage.clone());
        chunks.push(last);
    }
    chunks
}
