//! Applies a route's PII policy to canonical requests and responses: every text a message carries (string
//! content, text and refusal parts, refusals, tool-call arguments) is scanned in place.

use serde_json::Value;
use sluice_crds::v1alpha1::PiiMode;

use super::entity::Tally;
use super::redactor::{PiiBlocked, Redactor, TextForm};
use crate::api::openai::{
    ChatCompletion, ChatMessage, ChatRequest, ContentPart, EmbeddingInput, EmbeddingsRequest,
    MessageContent, ToolCall,
};

impl Redactor {
    /// Applies the policy to a chat request before it goes upstream.
    ///
    /// - `redact`: masks findings in place and returns what was masked;
    /// - `block`: leaves the request alone and returns [`PiiBlocked`] when anything was found;
    /// - `detect-only`: leaves the request alone and returns what was found.
    pub fn inspect_request(&self, request: &mut ChatRequest) -> Result<Tally, PiiBlocked> {
        let rewrite = self.mode() == PiiMode::Redact;
        let mut tally = Tally::default();
        for message in &mut request.messages {
            visit_message(message, &mut |text, form| {
                self.process(text, form, rewrite, &mut tally)
            });
        }
        self.verdict(tally)
    }

    /// Applies the policy to an embeddings request's input texts (token inputs carry no text to scan).
    pub fn inspect_embeddings(&self, request: &mut EmbeddingsRequest) -> Result<Tally, PiiBlocked> {
        let rewrite = self.mode() == PiiMode::Redact;
        let mut tally = Tally::default();
        match &mut request.input {
            EmbeddingInput::Text(text) => self.process(text, TextForm::Plain, rewrite, &mut tally),
            EmbeddingInput::Texts(texts) => {
                for text in texts {
                    self.process(text, TextForm::Plain, rewrite, &mut tally);
                }
            }
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {}
        }
        self.verdict(tally)
    }

    /// Applies the policy to one piece of request text (for surfaces without a canonical request).
    pub fn inspect_text(&self, text: &mut String) -> Result<Tally, PiiBlocked> {
        let mut tally = Tally::default();
        self.process(
            text,
            TextForm::Plain,
            self.mode() == PiiMode::Redact,
            &mut tally,
        );
        self.verdict(tally)
    }

    /// Applies the policy to a complete response when the route covers responses; a no-op otherwise.
    ///
    /// A response that already exists cannot be refused usefully, so `block` masks like `redact`;
    /// `detect-only` only counts.
    pub fn inspect_response(&self, completion: &mut ChatCompletion) -> Tally {
        let mut tally = Tally::default();
        if !self.covers_responses() {
            return tally;
        }
        let rewrite = self.mode() != PiiMode::DetectOnly;
        let mut visit = |text: &mut String, form| self.process(text, form, rewrite, &mut tally);
        for choice in &mut completion.choices {
            let message = &mut choice.message;
            if let Some(content) = &mut message.content {
                visit(content, TextForm::Plain);
            }
            if let Some(refusal) = &mut message.refusal {
                visit(refusal, TextForm::Plain);
            }
            if let Some(Value::String(reasoning)) = message.extra.get_mut("reasoning_content") {
                visit(reasoning, TextForm::Plain);
            }
            visit_tool_calls(message.tool_calls.as_deref_mut(), &mut visit);
        }
        tally
    }

    fn verdict(&self, tally: Tally) -> Result<Tally, PiiBlocked> {
        if self.mode() == PiiMode::Block && !tally.is_empty() {
            return Err(PiiBlocked::new(tally));
        }
        Ok(tally)
    }
}

fn visit_message(message: &mut ChatMessage, visit: &mut impl FnMut(&mut String, TextForm)) {
    match &mut message.content {
        Some(MessageContent::Text(text)) => visit(text, TextForm::Plain),
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                match part {
                    ContentPart::Text { text } => visit(text, TextForm::Plain),
                    ContentPart::Refusal { refusal } => visit(refusal, TextForm::Plain),
                    ContentPart::ImageUrl { .. }
                    | ContentPart::InputAudio { .. }
                    | ContentPart::File { .. }
                    | ContentPart::Other(_) => {}
                }
            }
        }
        None => {}
    }
    if let Some(refusal) = &mut message.refusal {
        visit(refusal, TextForm::Plain);
    }
    visit_tool_calls(message.tool_calls.as_deref_mut(), visit);
}

/// Every text a message carries, read-only, in the order [`Redactor::inspect_request`] visits them.
pub(crate) fn message_texts(message: &ChatMessage) -> impl Iterator<Item = &str> {
    let content: Vec<&str> = match &message.content {
        Some(MessageContent::Text(text)) => vec![text.as_str()],
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                ContentPart::Refusal { refusal } => Some(refusal.as_str()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let arguments = message
        .tool_calls
        .iter()
        .flatten()
        .map(|call| call.function.arguments.as_str());
    content
        .into_iter()
        .chain(message.refusal.as_deref())
        .chain(arguments)
}

fn visit_tool_calls(calls: Option<&mut [ToolCall]>, visit: &mut impl FnMut(&mut String, TextForm)) {
    for call in calls.unwrap_or_default() {
        visit(&mut call.function.arguments, TextForm::Json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{Choice, FunctionCall, ResponseMessage, Role};
    use crate::pii::entity::EntityKind;
    use sluice_crds::config::PiiConfig;

    fn redactor(mode: PiiMode, responses: bool) -> Redactor {
        Redactor::new(&PiiConfig {
            mode,
            entities: Vec::new(),
            custom_patterns: Vec::new(),
            responses,
        })
        .unwrap()
    }

    fn request() -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Support agent. Escalations: ops@example.com"},
                {"role": "user", "content": [
                    {"type": "text", "text": "My card is 4111 1111 1111 1111"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a@b.com.png"}}
                ]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "refund", "arguments": "{\"card\": 4111111111111111, \"phone\": \"+44 20 7946 0958\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "Refund sent to DE89 3704 0044 0532 0130 00"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn redact_mode_masks_every_text_field_in_place() {
        let mut request = request();
        let tally = redactor(PiiMode::Redact, false)
            .inspect_request(&mut request)
            .unwrap();
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json["messages"][0]["content"],
            "Support agent. Escalations: [EMAIL]"
        );
        assert_eq!(
            json["messages"][1]["content"][0]["text"],
            "My card is [CREDIT_CARD]"
        );
        assert_eq!(
            json["messages"][1]["content"][1]["image_url"]["url"],
            "https://example.com/a@b.com.png",
            "non-text parts pass untouched"
        );
        let arguments: Value = serde_json::from_str(
            json["messages"][2]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            arguments,
            serde_json::json!({"card": "[CREDIT_CARD]", "phone": "[PHONE]"})
        );
        assert_eq!(json["messages"][3]["content"], "Refund sent to [IBAN]");
        assert_eq!(tally.count(&EntityKind::CreditCard), 2);
        assert_eq!(tally.total(), 5);
    }

    #[test]
    fn block_mode_lists_kinds_and_never_values() {
        let mut request = request();
        let original = request.clone();
        let blocked = redactor(PiiMode::Block, false)
            .inspect_request(&mut request)
            .unwrap_err();
        assert_eq!(request, original, "a blocked request is not modified");
        let message = blocked.to_string();
        assert!(
            message.contains("credit_card, email, iban, phone"),
            "{message}"
        );
        for value in ["4111", "ops@example.com", "DE89", "7946"] {
            assert!(!message.contains(value), "{message} leaks {value}");
        }
        assert_eq!(PiiBlocked::CODE, "pii_detected");
    }

    #[test]
    fn detect_only_counts_without_touching() {
        let mut request = request();
        let original = request.clone();
        let tally = redactor(PiiMode::DetectOnly, false)
            .inspect_request(&mut request)
            .unwrap();
        assert_eq!(request, original);
        assert_eq!(tally.total(), 5);
    }

    #[test]
    fn clean_requests_pass_in_every_mode() {
        for mode in [PiiMode::Redact, PiiMode::Block, PiiMode::DetectOnly] {
            let mut request = ChatRequest {
                model: "m".into(),
                messages: vec![ChatMessage::text(
                    Role::User,
                    "What is the capital of France? Answer in 3 words.",
                )],
                ..ChatRequest::default()
            };
            assert!(
                redactor(mode, false)
                    .inspect_request(&mut request)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn responses_are_masked_only_when_covered() {
        let completion = ChatCompletion {
            choices: vec![Choice {
                message: ResponseMessage {
                    role: Role::Assistant,
                    content: Some("Reach Jane at jane@example.com".into()),
                    tool_calls: Some(vec![ToolCall {
                        id: "c".into(),
                        function: FunctionCall {
                            name: "f".into(),
                            arguments: r#"{"ip": "10.1.2.3"}"#.into(),
                        },
                        ..ToolCall::default()
                    }]),
                    ..ResponseMessage::default()
                },
                ..Choice::default()
            }],
            ..ChatCompletion::default()
        };
        let mut uncovered = completion.clone();
        assert!(
            redactor(PiiMode::Redact, false)
                .inspect_response(&mut uncovered)
                .is_empty()
        );
        assert_eq!(uncovered, completion);

        for mode in [PiiMode::Redact, PiiMode::Block] {
            let mut covered = completion.clone();
            let tally = redactor(mode, true).inspect_response(&mut covered);
            assert_eq!(tally.total(), 2);
            let message = &covered.choices[0].message;
            assert_eq!(message.content.as_deref(), Some("Reach Jane at [EMAIL]"));
            assert_eq!(
                message.tool_calls.as_ref().unwrap()[0].function.arguments,
                r#"{"ip": "[IP_ADDRESS]"}"#
            );
        }
    }

    #[test]
    fn embeddings_inputs_are_redacted() {
        let mut request: EmbeddingsRequest = serde_json::from_value(
            serde_json::json!({"model": "e", "input": ["call 415-555-2671", "clean"]}),
        )
        .unwrap();
        let tally = redactor(PiiMode::Redact, false)
            .inspect_embeddings(&mut request)
            .unwrap();
        assert_eq!(tally.count(&EntityKind::Phone), 1);
        assert_eq!(
            request.input,
            EmbeddingInput::Texts(vec!["call [PHONE]".into(), "clean".into()])
        );
    }
}
