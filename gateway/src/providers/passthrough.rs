//! Same-wire pass-through of non-streaming chat responses: an OpenAI-shaped upstream's 2xx body is
//! forwarded unchanged to an OpenAI-surface client, and only what the gateway itself needs (usage,
//! model, id, finish reasons) is read from it with a light, borrowed parse.
//!
//! The full parse into [`crate::api::openai::ChatCompletion`] (with its flattened `extra` maps) and
//! the re-serialisation were most of the JSON work of a non-streaming request. A body is passed through
//! only when re-serialising it would not have changed what the client sees in substance: every field
//! the canonical encoder would fill in with a default (`id`, `object`, `created`, `model`, a message's
//! `role` and `content`) is present, and usage is reported (without it metering counts the answer's
//! text, which needs the full parse). Anything else falls back to the full parse.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::ProviderKind;
use crate::api::openai::{FinishReason, OBJECT_CHAT_COMPLETION, Usage};

/// An upstream answer forwarded byte for byte, with what metering and tracing read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCompletion {
    /// The upstream body, sent to the client as is.
    pub body: Bytes,
    pub id: String,
    pub model: String,
    pub finish_reasons: Vec<FinishReason>,
    pub usage: Usage,
}

/// The fields read from the body; everything else is skipped without being built.
#[derive(Deserialize)]
struct Summary<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    object: Cow<'a, str>,
    #[expect(dead_code, reason = "required to be present; its value is not needed")]
    created: IgnoredAny,
    #[serde(borrow)]
    model: Cow<'a, str>,
    choices: Vec<SummaryChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct SummaryChoice {
    #[expect(
        dead_code,
        reason = "required to be present; its content is not needed"
    )]
    message: SummaryMessage,
    finish_reason: Option<FinishReason>,
}

/// Both keys must be present (the canonical encoder would add them); their values are not read.
#[derive(Deserialize)]
#[expect(dead_code, reason = "the fields only assert presence")]
struct SummaryMessage {
    role: IgnoredAny,
    content: IgnoredAny,
}

/// The pass-through form of a 2xx chat body, or `None` when the provider does not speak the OpenAI
/// wire or the body needs the full parse (unusual shape, no usage, an error envelope, not JSON).
pub fn raw_chat_response(provider: ProviderKind, body: &Bytes) -> Option<RawCompletion> {
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {}
        ProviderKind::Anthropic | ProviderKind::Gemini => return None,
    }
    let summary: Summary<'_> = serde_json::from_slice(body).ok()?;
    if summary.object != OBJECT_CHAT_COMPLETION {
        return None;
    }
    Some(RawCompletion {
        body: body.clone(),
        id: summary.id.into_owned(),
        model: summary.model.into_owned(),
        finish_reasons: summary
            .choices
            .into_iter()
            .filter_map(|choice| choice.finish_reason)
            .collect(),
        usage: summary.usage?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::ChatCompletion;

    const FULL: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,
        "model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \u00e9",
        "refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],
        "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,
        "prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0}},
        "service_tier":"default","system_fingerprint":"fp_1"}"#;

    fn raw(provider: ProviderKind, body: &str) -> Option<RawCompletion> {
        raw_chat_response(provider, &Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn openai_wire_body_is_kept_byte_for_byte_with_its_usage() {
        for provider in [
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi,
            ProviderKind::OpenAiCompatible,
        ] {
            let raw = raw(provider, FULL).expect("passes through");
            assert_eq!(raw.body, FULL.as_bytes());
            assert_eq!(raw.id, "chatcmpl-1");
            assert_eq!(raw.model, "gpt-4o-mini");
            assert_eq!(raw.finish_reasons, vec![FinishReason::Stop]);
            // The same usage as the full parse reads.
            let full: ChatCompletion = serde_json::from_str(FULL).expect("full parse");
            assert_eq!(Some(&raw.usage), full.usage.as_ref());
            assert_eq!(raw.usage.cached_tokens(), 2);
        }
    }

    #[test]
    fn other_wires_are_never_passed_through() {
        assert!(raw(ProviderKind::Anthropic, FULL).is_none());
        assert!(raw(ProviderKind::Gemini, FULL).is_none());
    }

    #[test]
    fn bodies_the_encoder_would_change_take_the_full_parse() {
        let without = |field: &str| {
            let mut value: serde_json::Value = serde_json::from_str(FULL).expect("json");
            if let Some(object) = value.as_object_mut() {
                object.remove(field);
            }
            value.to_string()
        };
        for field in ["id", "object", "created", "model", "choices", "usage"] {
            assert!(
                raw(ProviderKind::OpenAi, &without(field)).is_none(),
                "{field}"
            );
        }
        let no_role = FULL.replace(r#""role":"assistant","#, "");
        assert!(raw(ProviderKind::OpenAi, &no_role).is_none());
        let no_content = FULL.replace(r#""content":"Hi \u00e9","#, "");
        assert!(raw(ProviderKind::OpenAi, &no_content).is_none());
        let chunk = FULL.replace("\"chat.completion\"", "\"chat.completion.chunk\"");
        assert!(raw(ProviderKind::OpenAi, &chunk).is_none());
        let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
        assert!(raw(ProviderKind::OpenAi, error).is_none());
        assert!(raw(ProviderKind::OpenAi, "<html>").is_none());
    }

    #[test]
    fn escaped_identifiers_and_unknown_finish_reasons_are_read() {
        let body = FULL
            .replace("chatcmpl-1", r"chat\/cmpl-1")
            .replace(r#""finish_reason":"stop""#, r#""finish_reason":"eos""#);
        let raw = raw(ProviderKind::OpenAiCompatible, &body).expect("passes through");
        assert_eq!(raw.id, "chat/cmpl-1");
        assert_eq!(raw.finish_reasons, vec![FinishReason::Other("eos".into())]);
        assert_eq!(raw.body, body.as_bytes());
    }
}
