//! Token counts: the provider's usage report when there is one, else an estimate with the o200k BPE.
//!
//! Estimates use OpenAI's `o200k_base` encoding for every provider. For OpenAI's current models it is
//! their tokenizer; for Claude and Gemini it is an approximation (their tokenizers are not published)
//! that typically lands within 10–20 % on English text. Chat formatting adds a few tokens per message,
//! counted as OpenAI's cookbook does.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::api::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, ContentPart, EmbeddingInput,
    EmbeddingsRequest, MessageContent, Usage,
};
use crate::metrics::TokenCounts;

/// Tokens the chat format adds around each message (role and separators).
const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;
/// What an image part is counted as before the provider reports: OpenAI's low-detail price, the floor of
/// any image.
const PER_IMAGE: u64 = 85;

/// Token counts from a provider's usage report.
pub fn token_counts(usage: &Usage) -> TokenCounts {
    TokenCounts {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        cached_input: usage.cached_tokens(),
    }
}

/// What a finished request consumed, and whether the figures were estimated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metered {
    pub tokens: TokenCounts,
    /// How many of `tokens` were estimated (all of them when the provider reported no usage).
    pub estimated: u64,
}

/// The request whose prompt is estimated.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    Chat(&'a ChatRequest),
    Embeddings(&'a EmbeddingsRequest),
}

/// The encoding is loaded.
static LOADED: AtomicBool = AtomicBool::new(false);
/// Loading has been started.
static LOADING: AtomicBool = AtomicBool::new(false);

fn bpe() -> &'static bpe_openai::Tokenizer {
    bpe_openai::o200k_base()
}

/// Loads the encoding (once; a moment of CPU and some megabytes, so only gateways that estimate load it).
pub fn warm_up() {
    let _ = bpe();
    LOADED.store(true, Ordering::Release);
}

/// Starts [`warm_up`] on a blocking thread, once.
pub fn load_in_background() {
    if LOADING.swap(true, Ordering::AcqRel) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(warm_up)),
        Err(_) => warm_up(),
    }
}

/// Tokens of a text in `o200k_base`. Until the encoding is loaded (the first moments after the first
/// estimate was asked for) no request waits for it: a third of the byte length stands in, more than
/// the encoding gives for natural language, so reservations err on the safe side.
pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if !LOADED.load(Ordering::Acquire) {
        load_in_background();
        return (text.len() as u64).div_ceil(3);
    }
    bpe().count(text) as u64
}

/// Estimated input tokens of a request.
pub fn estimate_prompt(prompt: Prompt<'_>) -> u64 {
    match prompt {
        Prompt::Chat(request) => estimate_chat(request),
        Prompt::Embeddings(request) => match &request.input {
            EmbeddingInput::Text(text) => count_text(text),
            EmbeddingInput::Texts(texts) => texts.iter().map(|text| count_text(text)).sum(),
            EmbeddingInput::Tokens(tokens) => tokens.len() as u64,
            EmbeddingInput::TokenBatches(batches) => batches.iter().map(|b| b.len() as u64).sum(),
        },
    }
}

fn estimate_chat(request: &ChatRequest) -> u64 {
    let mut total = REPLY_PRIMING;
    for message in &request.messages {
        total += PER_MESSAGE;
        match &message.content {
            Some(MessageContent::Text(text)) => total += count_text(text),
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    total += match part {
                        ContentPart::Text { text } => count_text(text),
                        ContentPart::Refusal { refusal } => count_text(refusal),
                        ContentPart::ImageUrl { .. } => PER_IMAGE,
                        // Audio and files are priced by the provider on decoded content; their encoded
                        // size says little, so they count as one image each.
                        _ => PER_IMAGE,
                    };
                }
            }
            None => {}
        }
        if let Some(name) = &message.name {
            total += 1 + count_text(name);
        }
        for call in message.tool_calls.iter().flatten() {
            total += PER_MESSAGE
                + count_text(&call.function.name)
                + count_text(&call.function.arguments);
        }
    }
    if let Some(tools) = &request.tools {
        // Providers render tool definitions into the prompt; their JSON is a close stand-in.
        total += count_text(&serde_json::to_string(tools).unwrap_or_default());
    }
    total
}

/// Output text kept per stream for an estimate; beyond this the estimate counts what was kept.
pub const MAX_KEPT_OUTPUT: usize = 1 << 20;

/// Appends a chunk's generated text (content, reasoning, refusal, tool arguments) to `into`, up to
/// [`MAX_KEPT_OUTPUT`]: what an output estimate counts when the stream ends without usage.
pub fn collect_output(chunk: &ChatCompletionChunk, into: &mut String) {
    for choice in &chunk.choices {
        let delta = &choice.delta;
        let calls = delta.tool_calls.iter().flatten().filter_map(|call| {
            call.function
                .as_ref()
                .map(|f| (f.name.as_deref(), f.arguments.as_deref()))
        });
        let texts = [
            delta.content.as_deref(),
            delta.reasoning_content.as_deref(),
            delta.refusal.as_deref(),
        ]
        .into_iter()
        .chain(calls.flat_map(|(name, arguments)| [name, arguments]))
        .flatten();
        for text in texts {
            if into.len() + text.len() > MAX_KEPT_OUTPUT {
                return;
            }
            into.push_str(text);
        }
    }
}

/// The generated text of a complete response (for an estimate when it carries no usage).
pub fn completion_text(completion: &ChatCompletion) -> String {
    let mut text = String::new();
    for choice in &completion.choices {
        let message = &choice.message;
        text.extend(message.content.as_deref());
        text.extend(message.refusal.as_deref());
        for call in message.tool_calls.iter().flatten() {
            text.push_str(&call.function.name);
            text.push_str(&call.function.arguments);
        }
    }
    text
}

/// The tokens of a finished request: the provider's report, or estimates where it reported none.
/// `prompt_estimate` is the admission-time estimate; `output_text` what was sent to the client.
pub fn meter(usage: Option<&Usage>, prompt_estimate: Option<u64>, output_text: &str) -> Metered {
    if let Some(usage) = usage {
        return Metered {
            tokens: token_counts(usage),
            estimated: 0,
        };
    }
    let input = prompt_estimate.unwrap_or(0);
    let output = count_text(output_text);
    Metered {
        tokens: TokenCounts {
            input,
            output,
            cached_input: 0,
        },
        estimated: input + output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChatMessage, Role};

    #[test]
    fn known_texts_count_as_openai_counts_them() {
        warm_up();
        // Reference counts from OpenAI's tokenizer (o200k_base).
        assert_eq!(count_text(""), 0);
        assert_eq!(count_text("hello world"), 2);
        assert_eq!(count_text("tiktoken is great!"), 6);
    }

    #[test]
    fn chat_prompts_add_the_message_format() {
        warm_up();
        let request: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "hello world"},
                {"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ]
        }))
        .unwrap();
        assert_eq!(
            estimate_prompt(Prompt::Chat(&request)),
            REPLY_PRIMING + 2 * PER_MESSAGE + 2 + 2 + PER_IMAGE
        );
        let plain = ChatRequest {
            messages: vec![ChatMessage::text(Role::User, "hello world")],
            ..request
        };
        assert_eq!(
            estimate_prompt(Prompt::Chat(&plain)),
            REPLY_PRIMING + PER_MESSAGE + 2
        );
    }

    #[test]
    fn reported_usage_wins_and_missing_usage_is_estimated() {
        warm_up();
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 4,
            total_tokens: 14,
            ..Usage::default()
        };
        let reported = meter(Some(&usage), Some(99), "ignored text");
        assert_eq!(
            (
                reported.tokens.input,
                reported.tokens.output,
                reported.estimated
            ),
            (10, 4, 0)
        );
        let estimated = meter(None, Some(12), "hello world");
        assert_eq!(
            (
                estimated.tokens.input,
                estimated.tokens.output,
                estimated.estimated
            ),
            (12, 2, 14)
        );
    }
}
