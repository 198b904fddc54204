//! Provider-neutral answers: what the mock says (text, tool calls, finish reason, usage), derived
//! deterministically from the request so tests can predict every figure.
//!
//! Token counts are whitespace-separated words. The prompt count covers the text a translation must carry
//! unchanged (system text, message text, tool results) and not tool definitions or tool-call arguments,
//! so the same conversation sent through any provider's format counts the same.

use serde_json::Value;

use super::behavior::{Behavior, TextSource};
use super::config::MockConfig;

/// Token counts a response reports, in OpenAI's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    /// All output tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// The part of `prompt_tokens` served from a prompt cache.
    pub cached_tokens: u64,
    /// The part of `completion_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage with no cached or reasoning tokens.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            ..Self::default()
        }
    }

    /// `prompt_tokens + completion_tokens`.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why generation stopped, mapped to each provider's own value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Natural end (`stop` / `end_turn` / `STOP`).
    Stop,
    /// Output token limit (`length` / `max_tokens` / `MAX_TOKENS`).
    Length,
    /// The answer ends in tool calls (`tool_calls` / `tool_use` / `STOP`).
    ToolCalls,
    /// Filtered (`content_filter` / `refusal` / `SAFETY`).
    ContentFilter,
}

/// A tool call the mock makes.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// Function name.
    pub name: String,
    /// Arguments object (serialized to a string for OpenAI).
    pub arguments: Value,
    /// Call id; generated (`call_…`, `toolu_…`) when absent. Gemini sends none.
    pub id: Option<String>,
    /// Gemini `thoughtSignature` attached to the `functionCall` part.
    pub thought_signature: Option<String>,
}

impl ToolCall {
    /// A call with a generated id and no signature.
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self {
            name: name.into(),
            arguments,
            id: None,
            thought_signature: None,
        }
    }

    /// Arguments as compact JSON text.
    pub fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }
}

/// What a request says, as far as the answer depends on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// Words in all carried text.
    pub words: u64,
    /// Text of the last user turn (text parts and tool results), echoed back by default.
    pub last_user_text: String,
    /// The request's output token limit.
    pub max_tokens: Option<u64>,
    /// The request's model, from the body or the path.
    pub model: Option<String>,
}

/// A fully decided answer, ready for a provider's renderer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reply {
    pub text: String,
    /// `text` split into stream events; concatenated they equal `text`.
    pub text_chunks: Vec<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Finish,
    pub usage: Usage,
}

/// Reply text when an echo finds nothing to echo (an image-only turn): providers reject empty text.
const EMPTY_ECHO: &str = "ok";

const VOCABULARY: [&str; 16] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
];

/// Decides the answer to a request under a behaviour and the server settings.
pub(crate) fn plan(prompt: &Prompt, behavior: &Behavior, config: &MockConfig) -> Reply {
    let tool_calls = behavior.content.tool_calls.clone();
    let mut text = match &behavior.content.text {
        TextSource::Default => match config.tokens {
            Some(count) => generate(count),
            None => echo(prompt),
        },
        TextSource::Echo => echo(prompt),
        TextSource::Fixed(text) => text.clone(),
        TextSource::Generated(count) => generate(*count),
    };
    let mut truncated = false;
    if let Some(limit) = prompt.max_tokens {
        let ends = word_ends(&text);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if ends.len() > limit {
            text.truncate(if limit == 0 { 0 } else { ends[limit - 1] });
            truncated = true;
        }
    }
    let finish = behavior.finish.unwrap_or(if truncated {
        Finish::Length
    } else if tool_calls.is_empty() {
        Finish::Stop
    } else {
        Finish::ToolCalls
    });
    let completion_tokens = count_words(&text)
        + tool_calls
            .iter()
            .map(|call| count_words(&call.name) + count_words(&call.arguments_json()))
            .sum::<u64>();
    let usage = behavior
        .usage
        .unwrap_or(Usage::new(prompt.words, completion_tokens));
    let chunks = behavior.chunks.or(config.chunks);
    Reply {
        text_chunks: split_text(&text, chunks),
        text,
        tool_calls,
        finish,
        usage,
    }
}

fn echo(prompt: &Prompt) -> String {
    if prompt.last_user_text.trim().is_empty() {
        EMPTY_ECHO.to_owned()
    } else {
        prompt.last_user_text.clone()
    }
}

/// `count` words from a fixed vocabulary, space-separated.
pub(crate) fn generate(count: usize) -> String {
    let mut text = String::with_capacity(count * 7);
    for index in 0..count {
        if index > 0 {
            text.push(' ');
        }
        text.push_str(VOCABULARY[index % VOCABULARY.len()]);
    }
    text
}

/// The mock's token count: whitespace-separated words.
///
/// Prompt tokens are the words of the text a translation must carry unchanged (system text, message
/// text, tool results, including the strings inside Gemini function responses), not tool definitions or
/// tool-call arguments, so one conversation counts the same in every provider's format. Completion tokens
/// are the reply's words plus, for each tool call, the words of its name and of its compact JSON arguments.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Byte offsets just past each word.
fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (index, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(index);
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if in_word {
        ends.push(text.len());
    }
    ends
}

/// Splits text into `chunks` pieces at word ends (default: one per word). Each piece after the first
/// starts with the whitespace before its first word, as model tokens do; the pieces concatenate to `text`.
pub(crate) fn split_text(text: &str, chunks: Option<usize>) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let ends = word_ends(text);
    if ends.is_empty() {
        return vec![text.to_owned()];
    }
    let pieces = chunks.unwrap_or(ends.len()).clamp(1, ends.len());
    let mut out = Vec::with_capacity(pieces);
    let mut start = 0;
    for piece in 0..pieces {
        // The last word of piece `piece` when the words are shared out as evenly as possible.
        let last_word = (piece + 1) * ends.len() / pieces - 1;
        let end = if piece + 1 == pieces {
            text.len()
        } else {
            ends[last_word]
        };
        out.push(text[start..end].to_owned());
        start = end;
    }
    out
}

/// Splits tool-call arguments into up to three stream fragments at character boundaries.
pub(crate) fn split_arguments(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    if chars.len() < 6 {
        return vec![arguments.to_owned()];
    }
    let third = chars.len() / 3;
    [
        &chars[..third],
        &chars[third..2 * third],
        &chars[2 * third..],
    ]
    .iter()
    .map(|part| part.iter().collect())
    .collect()
}

/// Appends every string inside a JSON value (tool results that arrive as objects).
pub(crate) fn push_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| push_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| push_strings(item, out)),
        _ => {}
    }
}

/// Accumulates a prompt's text while a provider module walks its request.
#[derive(Debug, Default)]
pub(crate) struct PromptBuilder {
    words: u64,
    turn: Vec<String>,
}

impl PromptBuilder {
    /// Text that counts towards the prompt but is not part of a user turn (system, assistant).
    pub fn count(&mut self, text: &str) {
        self.words += count_words(text);
    }

    /// Starts a new user turn; the last one started is the one echoed.
    pub fn start_user_turn(&mut self) {
        self.turn.clear();
    }

    /// Text in the current user turn.
    pub fn user_text(&mut self, text: &str) {
        self.count(text);
        self.turn.push(text.to_owned());
    }

    pub fn finish(self, max_tokens: Option<u64>, model: Option<String>) -> Prompt {
        Prompt {
            words: self.words,
            last_user_text: self.turn.join(" "),
            max_tokens,
            model,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prompt(text: &str, max_tokens: Option<u64>) -> Prompt {
        Prompt {
            words: 7,
            last_user_text: text.to_owned(),
            max_tokens,
            model: None,
        }
    }

    #[test]
    fn echo_repeats_the_last_user_turn_and_counts_words() {
        let reply = plan(
            &prompt("Hello there,  world", None),
            &Behavior::default(),
            &MockConfig::default(),
        );
        assert_eq!(reply.text, "Hello there,  world");
        assert_eq!(reply.text_chunks, ["Hello", " there,", "  world"]);
        assert_eq!(reply.usage, Usage::new(7, 3));
        assert_eq!(reply.finish, Finish::Stop);
    }

    #[test]
    fn max_tokens_truncates_and_reports_length() {
        let reply = plan(
            &prompt("one two three four", Some(2)),
            &Behavior::default(),
            &MockConfig::default(),
        );
        assert_eq!(reply.text, "one two");
        assert_eq!(reply.finish, Finish::Length);
        assert_eq!(reply.usage.completion_tokens, 2);
    }

    #[test]
    fn configured_tokens_generate_instead_of_echo() {
        let config = MockConfig {
            tokens: Some(5),
            chunks: Some(2),
            ..MockConfig::default()
        };
        let reply = plan(&prompt("ignored", None), &Behavior::default(), &config);
        assert_eq!(reply.text, "lorem ipsum dolor sit amet");
        assert_eq!(reply.text_chunks, ["lorem ipsum", " dolor sit amet"]);
        assert_eq!(reply.usage.completion_tokens, 5);
    }

    #[test]
    fn tool_calls_set_the_finish_reason_and_count_their_arguments() {
        let behavior = Behavior::tool_call("get_weather", json!({"city": "Rome"}));
        let reply = plan(&prompt("weather?", None), &behavior, &MockConfig::default());
        assert_eq!(reply.text, "");
        assert!(reply.text_chunks.is_empty());
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(reply.usage.completion_tokens, 2);
    }

    #[test]
    fn chunks_concatenate_to_the_text() {
        let text = " a  bb\nccc dddd ";
        for chunks in [None, Some(1), Some(2), Some(3), Some(10)] {
            assert_eq!(split_text(text, chunks).concat(), text, "{chunks:?}");
        }
        assert_eq!(split_text(text, Some(10)).len(), 4);
    }

    #[test]
    fn argument_fragments_concatenate_to_the_arguments() {
        for arguments in ["{}", "{\"city\":\"Rome\"}", "{\"q\":\"héllo wörld\"}"] {
            assert_eq!(split_arguments(arguments).concat(), arguments);
        }
    }
}
