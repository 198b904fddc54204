//! Redaction of streamed responses: text arrives in deltas, and a value split across two deltas must still
//! be masked, so each text stream holds back the bounded tail that could still grow into an entity.

use sluice_crds::v1alpha1::PiiMode;

use super::entity::Tally;
use super::mask::{JsonCursor, write_masked};
use super::redactor::{Redactor, TextForm};
use crate::api::openai::{
    ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta,
};

/// Most bytes a stream ever holds back. Every built-in entity is far shorter (the longest, a spaced IBAN,
/// is 42 bytes; an email at most 254), so only an unbounded custom pattern can reach it.
pub const MAX_HOLD: usize = 1024;

/// Longest token that counts as one group of a spaced number (`(0)20`, `123456`, `WEST`).
const MAX_GROUP: usize = 8;

/// Redacts one text stream (a choice's content, or one tool call's arguments) fed delta by delta.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    pending: String,
    json: Option<JsonCursor>,
    /// Bytes always held for custom patterns: their longest match, or [`MAX_HOLD`] when unbounded.
    custom_hold: usize,
}

impl StreamRedactor {
    /// A stream of plain text.
    pub fn new(redactor: &Redactor) -> Self {
        Self::with_form(redactor, TextForm::Plain)
    }

    /// A stream of JSON text (tool-call arguments): masks replacing bare values are quoted.
    pub fn json(redactor: &Redactor) -> Self {
        Self::with_form(redactor, TextForm::Json)
    }

    fn with_form(redactor: &Redactor, form: TextForm) -> Self {
        let custom_hold = redactor
            .scanner()
            .custom_max_len()
            .unwrap_or(MAX_HOLD)
            .min(MAX_HOLD);
        Self {
            redactor: redactor.clone(),
            pending: String::new(),
            json: (form == TextForm::Json).then(JsonCursor::default),
            custom_hold,
        }
    }

    /// Takes the next delta and returns the text that is now safe to send (masked), possibly empty.
    pub fn push(&mut self, delta: &str, tally: &mut Tally) -> String {
        self.pending.push_str(delta);
        let cut = self.safe_cut();
        self.emit(cut, tally)
    }

    /// Ends the stream: returns everything still held, masked.
    pub fn finish(&mut self, tally: &mut Tally) -> String {
        self.emit(self.pending.len(), tally)
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Where the text that cannot change any more ends: before the last token (it may still grow into an
    /// email or an address) and before the spaced groups of digits or capitals leading up to it (a card,
    /// phone or IBAN written in groups), and far enough back for the custom patterns, within [`MAX_HOLD`].
    fn safe_cut(&self) -> usize {
        let bytes = self.pending.as_bytes();
        let len = bytes.len();
        let token_start = |end: usize| {
            let mut start = end;
            while start > 0 && !bytes[start - 1].is_ascii_whitespace() {
                start -= 1;
            }
            start
        };
        let mut cut = token_start(len);
        while cut >= 2 && bytes[cut - 1] == b' ' {
            let start = token_start(cut - 1);
            if !group_like(&bytes[start..cut - 1]) {
                break;
            }
            cut = start;
        }
        if self.custom_hold > 0 {
            cut = cut.min(len.saturating_sub(self.custom_hold));
        }
        cut = cut.max(len.saturating_sub(MAX_HOLD));
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        cut
    }

    /// Sends `pending[..cut]` masked and keeps the rest. A finding that straddles the cut moves the cut to
    /// its start; only a finding longer than twice the hold bound (an unbounded custom pattern) is cut, and
    /// then its sent part is masked.
    fn emit(&mut self, mut cut: usize, tally: &mut Tally) -> String {
        if cut == 0 {
            // Nothing can be released yet, so there is nothing to scan for.
            return String::new();
        }
        let mut findings = self.redactor.find(&self.pending);
        let horizon = self.pending.len().saturating_sub(2 * MAX_HOLD);
        if let Some(straddling) = findings
            .iter()
            .find(|f| f.range.start < cut && f.range.end > cut)
            && straddling.range.start >= horizon
        {
            cut = straddling.range.start;
        }
        findings.retain(|finding| finding.range.start < cut);
        if let Some(last) = findings.last_mut() {
            last.range.end = last.range.end.min(cut);
        }
        let mut out = String::with_capacity(cut);
        write_masked(
            &mut out,
            &self.pending[..cut],
            &findings,
            tally,
            self.json.as_mut(),
        );
        self.pending.drain(..cut);
        out
    }
}

/// Whether a token can be one group of a spaced entity: short, made of digits, capitals and the
/// punctuation of phone numbers, and holding a digit or only capitals (`4111`, `(415)`, `+44`, `WEST`, `AB`).
fn group_like(token: &[u8]) -> bool {
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"+()./-".contains(byte);
    (1..=MAX_GROUP).contains(&token.len())
        && token.iter().all(allowed)
        && (token.iter().any(u8::is_ascii_digit) || !token.iter().any(u8::is_ascii_lowercase))
}

/// One text stream inside a chat stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Content,
    Refusal,
    Reasoning,
    /// A tool call's arguments, by the call's `index`.
    Arguments(u32),
}

/// Redacts a canonical chat stream chunk by chunk, holding a bounded tail per choice and field.
///
/// Call [`ChunkRedactor::process`] on every chunk before it is encoded; held text is released into the
/// chunk that carries the choice's `finish_reason`. If the stream ends without one (an upstream failure),
/// [`ChunkRedactor::finish`] returns a chunk with whatever is still held. In `detect-only` mode chunks pass
/// unchanged and findings are only counted.
#[derive(Debug)]
pub struct ChunkRedactor {
    redactor: Redactor,
    rewrite: bool,
    streams: Vec<((u32, Field), StreamRedactor)>,
    /// The latest chunk's envelope, for a final chunk of released text.
    envelope: ChatCompletionChunk,
    tally: Tally,
}

impl ChunkRedactor {
    /// A redactor for a route's response stream; `None` when the policy does not cover responses.
    pub fn for_responses(redactor: &Redactor) -> Option<Self> {
        redactor.covers_responses().then(|| Self {
            redactor: redactor.clone(),
            rewrite: redactor.mode() != PiiMode::DetectOnly,
            streams: Vec::new(),
            envelope: ChatCompletionChunk::default(),
            tally: Tally::default(),
        })
    }

    /// What was found (and, unless detect-only, masked) so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Redacts one chunk in place.
    pub fn process(&mut self, chunk: &mut ChatCompletionChunk) {
        if self.envelope.id != chunk.id || self.envelope.model != chunk.model {
            self.remember_envelope(chunk);
        }
        for choice in &mut chunk.choices {
            let index = choice.index;
            let delta = &mut choice.delta;
            self.feed_text(index, Field::Content, &mut delta.content);
            self.feed_text(index, Field::Refusal, &mut delta.refusal);
            self.feed_text(index, Field::Reasoning, &mut delta.reasoning_content);
            for call in delta.tool_calls.iter_mut().flatten() {
                if let Some(function) = &mut call.function {
                    self.feed_text(index, Field::Arguments(call.index), &mut function.arguments);
                }
            }
            if choice.finish_reason.is_some() {
                self.release(index, delta);
            }
        }
    }

    /// Releases what is still held for choices that never finished, as one more chunk (`None` if nothing).
    pub fn finish(&mut self) -> Option<ChatCompletionChunk> {
        let mut indexes: Vec<u32> = self.streams.iter().map(|((index, _), _)| *index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut chunk = self.envelope.clone();
        for index in indexes {
            let mut delta = Delta::default();
            self.release(index, &mut delta);
            if delta != Delta::default() {
                chunk.choices.push(ChunkChoice {
                    index,
                    delta,
                    ..ChunkChoice::default()
                });
            }
        }
        (!chunk.choices.is_empty()).then_some(chunk)
    }

    fn remember_envelope(&mut self, chunk: &ChatCompletionChunk) {
        self.envelope = ChatCompletionChunk {
            id: chunk.id.clone(),
            object: chunk.object.clone(),
            created: chunk.created,
            model: chunk.model.clone(),
            system_fingerprint: chunk.system_fingerprint.clone(),
            ..ChatCompletionChunk::default()
        };
    }

    fn feed_text(&mut self, index: u32, field: Field, text: &mut Option<String>) {
        let Some(delta) = text.as_deref() else {
            return;
        };
        let stream = stream_for(&mut self.streams, &self.redactor, index, field);
        let safe = stream.push(delta, &mut self.tally);
        if self.rewrite {
            *text = Some(safe);
        }
    }

    /// Appends everything held for choice `index` to `delta` and forgets its streams.
    fn release(&mut self, index: u32, delta: &mut Delta) {
        let mut position = 0;
        while position < self.streams.len() {
            if self.streams[position].0.0 != index {
                position += 1;
                continue;
            }
            let ((_, field), mut stream) = self.streams.swap_remove(position);
            let rest = stream.finish(&mut self.tally);
            if !self.rewrite || rest.is_empty() {
                continue;
            }
            match field {
                Field::Content => append(&mut delta.content, &rest),
                Field::Refusal => append(&mut delta.refusal, &rest),
                Field::Reasoning => append(&mut delta.reasoning_content, &rest),
                Field::Arguments(call) => append_arguments(delta, call, &rest),
            }
        }
    }
}

/// The stream of `(index, field)`, created on its first delta.
fn stream_for<'s>(
    streams: &'s mut Vec<((u32, Field), StreamRedactor)>,
    redactor: &Redactor,
    index: u32,
    field: Field,
) -> &'s mut StreamRedactor {
    let position = match streams.iter().position(|(key, _)| *key == (index, field)) {
        Some(position) => position,
        None => {
            let stream = match field {
                Field::Arguments(_) => StreamRedactor::json(redactor),
                Field::Content | Field::Refusal | Field::Reasoning => StreamRedactor::new(redactor),
            };
            streams.push(((index, field), stream));
            streams.len() - 1
        }
    };
    &mut streams[position].1
}

fn append(slot: &mut Option<String>, rest: &str) {
    slot.get_or_insert_with(String::new).push_str(rest);
}

fn append_arguments(delta: &mut Delta, call: u32, rest: &str) {
    let calls = delta.tool_calls.get_or_insert_with(Vec::new);
    let position = match calls.iter().position(|existing| existing.index == call) {
        Some(position) => position,
        None => {
            calls.push(ToolCallDelta {
                index: call,
                ..ToolCallDelta::default()
            });
            calls.len() - 1
        }
    };
    let function = calls[position]
        .function
        .get_or_insert_with(FunctionCallDelta::default);
    append(&mut function.arguments, rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::FinishReason;
    use crate::pii::entity::Finding;
    use sluice_crds::config::PiiConfig;
    use sluice_crds::v1alpha1::PiiPattern;

    /// Whole-text redaction, the reference the streamed output must equal.
    fn whole(redactor: &Redactor, text: &str) -> (String, Vec<Finding>) {
        let findings = redactor.find(text);
        let mut out = String::new();
        write_masked(&mut out, text, &findings, &mut Tally::default(), None);
        (out, findings)
    }

    fn redactor(mode: PiiMode, custom: Vec<PiiPattern>) -> Redactor {
        Redactor::new(&PiiConfig {
            mode,
            entities: Vec::new(),
            custom_patterns: custom,
            responses: true,
        })
        .unwrap()
    }

    const TEXT: &str = "Hi! Write to jane.doe@example.com or call +44 20 7946 0958. Card 4111 1111 1111 1111, \
                        IBAN GB82 WEST 1234 5698 7654 32, SSN 536-90-4399, server 2001:db8::8a2e:370:7334.\nBye";

    /// Splitting the text at every position into two deltas, and into deltas of every small size, gives the
    /// same masked output as redacting it whole: no value leaks through a split.
    #[test]
    fn every_split_gives_the_whole_text_result() {
        let redactor = redactor(PiiMode::Redact, Vec::new());
        let (expected, findings) = whole(&redactor, TEXT);
        assert_eq!(findings.len(), 6, "{expected}");
        let boundaries: Vec<usize> = (0..=TEXT.len())
            .filter(|i| TEXT.is_char_boundary(*i))
            .collect();
        for &split in &boundaries {
            let mut stream = StreamRedactor::new(&redactor);
            let mut tally = Tally::default();
            let mut out = stream.push(&TEXT[..split], &mut tally);
            out += &stream.push(&TEXT[split..], &mut tally);
            out += &stream.finish(&mut tally);
            assert_eq!(out, expected, "split at {split}");
            assert_eq!(tally.total(), 6);
        }
        for size in 1..=7 {
            let mut stream = StreamRedactor::new(&redactor);
            let mut tally = Tally::default();
            let mut out = String::new();
            let mut start = 0;
            while start < TEXT.len() {
                let mut end = (start + size).min(TEXT.len());
                while !TEXT.is_char_boundary(end) {
                    end += 1;
                }
                let safe = stream.push(&TEXT[start..end], &mut tally);
                for value in [
                    "jane.doe",
                    "7946",
                    "1111 1111",
                    "WEST 1234",
                    "536-90",
                    "8a2e",
                ] {
                    assert!(!safe.contains(value), "{value} leaked in deltas of {size}");
                }
                out += &safe;
                start = end;
            }
            out += &stream.finish(&mut tally);
            assert_eq!(out, expected, "deltas of {size} bytes");
        }
    }

    #[test]
    fn prose_is_released_promptly() {
        let redactor = redactor(PiiMode::Redact, Vec::new());
        let mut stream = StreamRedactor::new(&redactor);
        let mut tally = Tally::default();
        assert_eq!(stream.push("The answer is", &mut tally), "The answer ");
        assert_eq!(stream.push(" forty", &mut tally), "is ");
        assert_eq!(stream.push(" two.\n", &mut tally), "forty two.\n");
        assert_eq!(stream.held(), 0);
    }

    #[test]
    fn the_hold_is_bounded_even_for_unbounded_custom_patterns() {
        let custom = vec![PiiPattern {
            name: "secret".into(),
            regex: "SECRET-[a-z]+".into(),
        }];
        let redactor = redactor(PiiMode::Redact, custom);
        let mut stream = StreamRedactor::new(&redactor);
        let mut tally = Tally::default();
        let mut out = String::new();
        for _ in 0..100 {
            out += &stream.push("lorem ipsum dolor sit amet ", &mut tally);
            assert!(stream.held() <= MAX_HOLD);
        }
        out += &stream.push("SECRET-", &mut tally);
        out += &stream.push("abc done", &mut tally);
        out += &stream.finish(&mut tally);
        assert!(
            out.ends_with("amet [SECRET] done"),
            "{}",
            &out[out.len() - 40..]
        );
    }

    #[test]
    fn tool_call_arguments_stay_valid_json() {
        let redactor = redactor(PiiMode::Redact, Vec::new());
        let mut stream = StreamRedactor::json(&redactor);
        let mut tally = Tally::default();
        let mut out = String::new();
        for delta in [
            r#"{"card": 4111"#,
            "1111111",
            r#"11111, "to": "bob@ex"#,
            r#"ample.org"}"#,
        ] {
            out += &stream.push(delta, &mut tally);
        }
        out += &stream.finish(&mut tally);
        assert_eq!(out, r#"{"card": "[CREDIT_CARD]", "to": "[EMAIL]"}"#);
    }

    fn chunk(
        index: u32,
        content: Option<&str>,
        finish: Option<FinishReason>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: "chatcmpl-1".into(),
            object: "chat.completion.chunk".into(),
            model: "m".into(),
            choices: vec![ChunkChoice {
                index,
                delta: Delta {
                    content: content.map(str::to_owned),
                    ..Delta::default()
                },
                finish_reason: finish,
                logprobs: None,
            }],
            ..ChatCompletionChunk::default()
        }
    }

    #[test]
    fn chunks_release_held_text_with_the_finish_reason() {
        let redactor = redactor(PiiMode::Redact, Vec::new());
        let mut chunks = ChunkRedactor::for_responses(&redactor).unwrap();
        let mut streamed = String::new();
        for mut next in [
            chunk(0, Some("Mail jane@exa"), None),
            chunk(0, Some("mple.com now"), None),
            chunk(0, None, Some(FinishReason::Stop)),
        ] {
            chunks.process(&mut next);
            streamed += next.choices[0].delta.content.as_deref().unwrap_or("");
        }
        assert_eq!(streamed, "Mail [EMAIL] now");
        assert!(chunks.finish().is_none());
        assert_eq!(chunks.tally().total(), 1);
    }

    #[test]
    fn unfinished_choices_are_flushed_by_finish() {
        let redactor = redactor(PiiMode::Redact, Vec::new());
        let mut chunks = ChunkRedactor::for_responses(&redactor).unwrap();
        let mut first = chunk(1, Some("call 415-555-"), None);
        chunks.process(&mut first);
        assert_eq!(first.choices[0].delta.content.as_deref(), Some("call "));
        let last = chunks.finish().unwrap();
        assert_eq!(last.choices[0].index, 1);
        assert_eq!(last.choices[0].delta.content.as_deref(), Some("415-555-"));
        assert_eq!(last.id, "chatcmpl-1");
    }

    #[test]
    fn detect_only_passes_chunks_unchanged_and_counts() {
        let redactor = redactor(PiiMode::DetectOnly, Vec::new());
        let mut chunks = ChunkRedactor::for_responses(&redactor).unwrap();
        let mut first = chunk(0, Some("ip 10.0.0."), None);
        let mut second = chunk(0, Some("7 ok"), Some(FinishReason::Stop));
        chunks.process(&mut first);
        chunks.process(&mut second);
        assert_eq!(
            first.choices[0].delta.content.as_deref(),
            Some("ip 10.0.0.")
        );
        assert_eq!(second.choices[0].delta.content.as_deref(), Some("7 ok"));
        assert_eq!(chunks.tally().total(), 1);
    }

    #[test]
    fn policies_without_responses_give_no_chunk_redactor() {
        let redactor = Redactor::new(&PiiConfig {
            mode: PiiMode::Redact,
            entities: Vec::new(),
            custom_patterns: Vec::new(),
            responses: false,
        })
        .unwrap();
        assert!(ChunkRedactor::for_responses(&redactor).is_none());
    }
}
