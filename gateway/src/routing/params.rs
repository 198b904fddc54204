//! A route's request defaults, overrides and system prompt prefix, applied to the canonical request.

use sluice_crds::v1alpha1::RequestParameters;

use crate::api::openai::{ChatMessage, ChatRequest, ContentPart, MessageContent, Role};

/// Separates the route's prefix from the caller's own system prompt.
const PREFIX_SEPARATOR: &str = "\n\n";

/// Applies, in order: `defaults` (only where the caller set nothing), `overrides` (always), and the system
/// prompt prefix (prepended to the first system/developer message, or a new leading system message).
pub fn apply_route_parameters(
    request: &mut ChatRequest,
    defaults: &RequestParameters,
    overrides: &RequestParameters,
    system_prompt_prefix: Option<&str>,
) {
    if request.temperature.is_none() {
        request.temperature = defaults.temperature;
    }
    if request.top_p.is_none() {
        request.top_p = defaults.top_p;
    }
    if request.max_output_tokens().is_none() {
        request.max_completion_tokens = defaults.max_tokens.and_then(to_u32);
    }
    if let Some(temperature) = overrides.temperature {
        request.temperature = Some(temperature);
    }
    if let Some(top_p) = overrides.top_p {
        request.top_p = Some(top_p);
    }
    if let Some(max) = overrides.max_tokens.and_then(to_u32) {
        // Keep the field the caller used, so a model that only knows the legacy name still gets it.
        if request.max_tokens.is_some() && request.max_completion_tokens.is_none() {
            request.max_tokens = Some(max);
        } else {
            request.max_tokens = None;
            request.max_completion_tokens = Some(max);
        }
    }
    if let Some(prefix) = system_prompt_prefix.filter(|p| !p.is_empty()) {
        prepend_system_prompt(&mut request.messages, prefix);
    }
}

fn to_u32(value: i64) -> Option<u32> {
    u32::try_from(value).ok()
}

fn prepend_system_prompt(messages: &mut Vec<ChatMessage>, prefix: &str) {
    let existing = messages
        .iter_mut()
        .find(|m| matches!(m.role, Role::System | Role::Developer));
    match existing {
        Some(message) => match &mut message.content {
            Some(MessageContent::Text(text)) => {
                text.insert_str(0, PREFIX_SEPARATOR);
                text.insert_str(0, prefix);
            }
            Some(MessageContent::Parts(parts)) => {
                parts.insert(
                    0,
                    ContentPart::Text {
                        text: format!("{prefix}{PREFIX_SEPARATOR}"),
                    },
                );
            }
            None => message.content = Some(MessageContent::Text(prefix.to_owned())),
        },
        None => messages.insert(0, ChatMessage::text(Role::System, prefix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages,
            ..ChatRequest::default()
        }
    }

    fn params(temperature: Option<f64>, max_tokens: Option<i64>) -> RequestParameters {
        RequestParameters {
            temperature,
            top_p: None,
            max_tokens,
        }
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let mut unset = request(vec![ChatMessage::text(Role::User, "hi")]);
        apply_route_parameters(
            &mut unset,
            &params(Some(0.2), Some(100)),
            &RequestParameters::default(),
            None,
        );
        assert_eq!(
            (
                unset.temperature,
                unset.max_completion_tokens,
                unset.max_tokens
            ),
            (Some(0.2), Some(100), None)
        );

        let mut set = request(vec![ChatMessage::text(Role::User, "hi")]);
        set.temperature = Some(1.0);
        set.max_tokens = Some(7);
        apply_route_parameters(
            &mut set,
            &params(Some(0.2), Some(100)),
            &RequestParameters::default(),
            None,
        );
        assert_eq!(
            (set.temperature, set.max_tokens, set.max_completion_tokens),
            (Some(1.0), Some(7), None)
        );
    }

    #[test]
    fn overrides_replace_what_the_caller_sent() {
        let mut legacy = request(vec![ChatMessage::text(Role::User, "hi")]);
        legacy.temperature = Some(1.5);
        legacy.max_tokens = Some(4000);
        apply_route_parameters(
            &mut legacy,
            &RequestParameters::default(),
            &params(Some(0.0), Some(256)),
            None,
        );
        assert_eq!(
            (
                legacy.temperature,
                legacy.max_tokens,
                legacy.max_completion_tokens
            ),
            (Some(0.0), Some(256), None)
        );

        let mut modern = request(vec![ChatMessage::text(Role::User, "hi")]);
        modern.max_tokens = Some(4000);
        modern.max_completion_tokens = Some(4000);
        apply_route_parameters(
            &mut modern,
            &RequestParameters::default(),
            &params(None, Some(256)),
            None,
        );
        assert_eq!(
            (modern.max_tokens, modern.max_completion_tokens),
            (None, Some(256))
        );
    }

    #[test]
    fn system_prefix_goes_before_the_callers_system_prompt_or_into_a_new_one() {
        let mut with_system = request(vec![
            ChatMessage::text(Role::User, "u"),
            ChatMessage::text(Role::Developer, "Be terse."),
        ]);
        apply_route_parameters(
            &mut with_system,
            &RequestParameters::default(),
            &RequestParameters::default(),
            Some("Policy."),
        );
        assert_eq!(
            with_system.messages[1].content,
            Some(MessageContent::Text("Policy.\n\nBe terse.".into()))
        );
        assert_eq!(with_system.messages.len(), 2);

        let mut without = request(vec![ChatMessage::text(Role::User, "u")]);
        apply_route_parameters(
            &mut without,
            &RequestParameters::default(),
            &RequestParameters::default(),
            Some("Policy."),
        );
        assert_eq!(without.messages[0].role, Role::System);
        assert_eq!(
            without.messages[0].content,
            Some(MessageContent::Text("Policy.".into()))
        );
        assert_eq!(without.messages.len(), 2);

        let mut parts = request(vec![ChatMessage {
            role: Role::System,
            content: Some(MessageContent::Parts(vec![ContentPart::Text {
                text: "Own.".into(),
            }])),
            ..ChatMessage::default()
        }]);
        apply_route_parameters(
            &mut parts,
            &RequestParameters::default(),
            &RequestParameters::default(),
            Some("Policy."),
        );
        assert_eq!(
            parts.messages[0]
                .content
                .as_ref()
                .map(MessageContent::joined_text),
            Some("Policy.\n\nOwn.".to_owned())
        );
    }
}
