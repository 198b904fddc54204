//! Anthropic Messages surface ↔ canonical model: `/v1/messages` requests become canonical requests, canonical
//! responses become Messages responses.
//!
//! Choices: `system` blocks are joined by a blank line into one system message; `tool_result` blocks become
//! `tool` messages placed before the rest of their user turn, with `is_error` folded into the text as an
//! `Error: ` prefix; images inside tool results move to the following user message; thinking blocks are
//! dropped (OpenAI Chat has no slot for them); Anthropic server tools are refused.

use serde_json::Value;

use super::RequestError;
use super::anthropic::{
    Content, ContentBlock, MediaSource, MessagesRequest, MessagesResponse, Role as AnthropicRole,
    StopReason, ToolChoice as AnthropicToolChoice,
};
use super::openai::{
    ChatCompletion, ChatMessage, ChatRequest, ContentPart, FileInput, FinishReason, FunctionCall,
    FunctionDefinition, ImageUrl, MessageContent, Role, Stop, StreamOptions, Tool, ToolCall,
    ToolChoice, ToolKind,
};
use crate::providers::media::data_url;
use crate::providers::usage::to_anthropic;

/// Converts a validated Messages request into the canonical request, moving its strings.
pub fn request_to_canonical(request: MessagesRequest) -> Result<ChatRequest, RequestError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let text = match system {
            Content::Text(text) => text,
            Content::Blocks(blocks) => {
                let mut texts = Vec::with_capacity(blocks.len());
                for (index, block) in blocks.into_iter().enumerate() {
                    match block {
                        ContentBlock::Text { text, .. } => texts.push(text),
                        other => {
                            return Err(RequestError::new(format!(
                                "system[{index}]: `{}` blocks are not allowed in system",
                                other.kind()
                            )));
                        }
                    }
                }
                texts.join("\n\n")
            }
        };
        if !text.is_empty() {
            messages.push(ChatMessage::text(Role::System, text));
        }
    }
    for (index, message) in request.messages.into_iter().enumerate() {
        match message.role {
            AnthropicRole::User => user_turn(index, message.content, &mut messages)?,
            AnthropicRole::Assistant => messages.push(assistant_turn(index, message.content)?),
        }
    }

    let mut tools = Vec::new();
    for (index, tool) in request.tools.into_iter().flatten().enumerate() {
        if !tool.is_custom() {
            return Err(RequestError::new(format!(
                "tools[{index}]: Anthropic server tool `{}` cannot be served by this route",
                tool.kind.as_deref().unwrap_or_default()
            )));
        }
        tools.push(Tool {
            kind: ToolKind::Function,
            function: FunctionDefinition {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema,
                strict: None,
            },
        });
    }
    let parallel_tool_calls = request
        .tool_choice
        .as_ref()
        .filter(|choice| choice.disables_parallel_tool_use())
        .map(|_| false);
    let tool_choice = request.tool_choice.map(|choice| match choice {
        AnthropicToolChoice::Auto { .. } => ToolChoice::Auto,
        AnthropicToolChoice::Any { .. } => ToolChoice::Required,
        AnthropicToolChoice::Tool { name, .. } => ToolChoice::Function { name },
        AnthropicToolChoice::None => ToolChoice::None,
    });
    let stream = request.stream.unwrap_or(false);
    let mut extra = serde_json::Map::new();
    if let Some(top_k) = request.top_k {
        extra.insert("top_k".to_owned(), Value::from(top_k));
    }

    Ok(ChatRequest {
        model: request.model,
        messages,
        stream: Some(stream),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: serde_json::Map::new(),
        }),
        max_tokens: None,
        max_completion_tokens: Some(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        n: None,
        stop: request.stop_sequences.map(Stop),
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls,
        response_format: None,
        user: request.metadata.and_then(|metadata| metadata.user_id),
        extra,
    })
}

/// A user turn: its tool results become `tool` messages first, the remaining blocks one user message.
fn user_turn(
    index: usize,
    content: Content,
    messages: &mut Vec<ChatMessage>,
) -> Result<(), RequestError> {
    let blocks = match content {
        Content::Text(text) => {
            messages.push(ChatMessage::text(Role::User, text));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for (position, block) in blocks.into_iter().enumerate() {
        let field = || format!("messages[{index}].content[{position}]");
        match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut text = String::new();
                if is_error == Some(true) {
                    text.push_str("Error: ");
                }
                match content {
                    None => {}
                    Some(Content::Text(result)) => text.push_str(&result),
                    Some(Content::Blocks(result_blocks)) => {
                        for block in result_blocks {
                            match block {
                                ContentBlock::Text { text: part, .. } => text.push_str(&part),
                                other => parts.push(media_part(&field(), other)?),
                            }
                        }
                    }
                }
                messages.push(ChatMessage {
                    role: Role::Tool,
                    content: Some(MessageContent::Text(text)),
                    tool_call_id: Some(tool_use_id),
                    ..ChatMessage::default()
                });
            }
            ContentBlock::Text { text, .. } => parts.push(ContentPart::Text { text }),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            other => parts.push(media_part(&field(), other)?),
        }
    }
    let content = match parts.len() {
        0 => return Ok(()),
        1 if matches!(parts[0], ContentPart::Text { .. }) => match parts.pop() {
            Some(ContentPart::Text { text }) => MessageContent::Text(text),
            _ => return Ok(()),
        },
        _ => MessageContent::Parts(parts),
    };
    messages.push(ChatMessage {
        role: Role::User,
        content: Some(content),
        ..ChatMessage::default()
    });
    Ok(())
}

/// Image and document blocks as OpenAI parts.
fn media_part(field: &str, block: ContentBlock) -> Result<ContentPart, RequestError> {
    match block {
        ContentBlock::Image { source, .. } => match source {
            MediaSource::Base64 { media_type, data } => Ok(ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: data_url(&media_type, &data),
                    detail: None,
                },
            }),
            MediaSource::Url { url } => Ok(ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail: None },
            }),
            _ => Err(RequestError::new(format!(
                "{field}.source: only base64 and url image sources can be served by this route"
            ))),
        },
        ContentBlock::Document { source, extra } => match source {
            MediaSource::Base64 { media_type, data } => Ok(ContentPart::File {
                file: FileInput {
                    file_data: Some(data_url(&media_type, &data)),
                    file_id: None,
                    filename: extra
                        .get("title")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
            }),
            MediaSource::Text { data, .. } => Ok(ContentPart::Text { text: data }),
            _ => Err(RequestError::new(format!(
                "{field}.source: only base64 and text document sources can be served by this route"
            ))),
        },
        other => Err(RequestError::new(format!(
            "{field}: `{}` blocks cannot be served by this route",
            other.kind()
        ))),
    }
}

fn assistant_turn(index: usize, content: Content) -> Result<ChatMessage, RequestError> {
    let blocks = match content {
        Content::Text(text) => return Ok(ChatMessage::text(Role::Assistant, text)),
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (position, block) in blocks.into_iter().enumerate() {
        match block {
            ContentBlock::Text { text: part, .. } => text.push_str(&part),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => tool_calls.push(ToolCall {
                id,
                kind: ToolKind::Function,
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            other => {
                return Err(RequestError::new(format!(
                    "messages[{index}].content[{position}]: `{}` blocks cannot be served by this route",
                    other.kind()
                )));
            }
        }
    }
    Ok(ChatMessage {
        role: Role::Assistant,
        content: (!text.is_empty()).then_some(MessageContent::Text(text)),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        ..ChatMessage::default()
    })
}

/// OpenAI finish reason → Anthropic stop reason (`stop` is reported as `end_turn`).
pub fn stop_reason(finish: &FinishReason) -> StopReason {
    match finish {
        FinishReason::Length => StopReason::MaxTokens,
        FinishReason::ToolCalls | FinishReason::FunctionCall => StopReason::ToolUse,
        FinishReason::ContentFilter => StopReason::Refusal,
        FinishReason::Stop | FinishReason::Other(_) => StopReason::EndTurn,
    }
}

/// Tool-call arguments as an Anthropic `input` object; invalid JSON becomes `{}`.
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => Value::Object(serde_json::Map::new()),
    }
}

/// Converts a canonical response into a Messages response (first choice only: Anthropic has no `n`).
pub fn response_from_canonical(completion: ChatCompletion) -> MessagesResponse {
    let usage = completion
        .usage
        .as_ref()
        .map(to_anthropic)
        .unwrap_or_default();
    let mut content = Vec::new();
    let mut stop = None;
    if let Some(choice) = completion.choices.into_iter().next() {
        if let Some(text) = choice.message.content.filter(|text| !text.is_empty()) {
            content.push(ContentBlock::text(text));
        }
        for call in choice.message.tool_calls.into_iter().flatten() {
            content.push(ContentBlock::ToolUse {
                input: tool_input(&call.function.arguments),
                id: call.id,
                name: call.function.name,
                extra: serde_json::Map::new(),
            });
        }
        stop = choice.finish_reason.as_ref().map(stop_reason);
    }
    MessagesResponse {
        id: completion.id,
        kind: "message".to_owned(),
        role: AnthropicRole::Assistant,
        model: completion.model,
        content,
        stop_reason: Some(stop.unwrap_or(StopReason::EndTurn)),
        stop_sequence: None,
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_messages_request;
    use pretty_assertions::assert_eq;

    const REQUEST: &str = r#"{
      "model": "claude-sonnet-4-5", "max_tokens": 1024,
      "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Use French."}],
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "Weather in Paris?"},
          {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
        {"role": "assistant", "content": [
          {"type": "thinking", "thinking": "need tool", "signature": "sig"},
          {"type": "text", "text": "Checking."},
          {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "18C, sunny"}]},
          {"type": "text", "text": "And tomorrow?"}]}
      ],
      "tools": [{"name": "get_weather", "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
      "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
      "stop_sequences": ["END"], "temperature": 0.7, "top_k": 40,
      "stream": true, "metadata": {"user_id": "u-123"}
    }"#;

    #[test]
    fn messages_request_becomes_canonical() {
        let request = parse_messages_request(REQUEST.as_bytes()).unwrap();
        let canonical = request_to_canonical(request).unwrap();
        let value = serde_json::to_value(&canonical).unwrap();
        let expected = serde_json::json!({
          "model": "claude-sonnet-4-5",
          "messages": [
            {"role": "system", "content": "Be terse.\n\nUse French."},
            {"role": "user", "content": [
              {"type": "text", "text": "Weather in Paris?"},
              {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
              {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "content": "18C, sunny", "tool_call_id": "toolu_01"},
            {"role": "user", "content": "And tomorrow?"}
          ],
          "stream": true,
          "stream_options": {"include_usage": true},
          "max_completion_tokens": 1024,
          "temperature": 0.7,
          "stop": ["END"],
          "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
          "tool_choice": "required",
          "parallel_tool_calls": false,
          "user": "u-123",
          "top_k": 40
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn tool_errors_are_folded_into_text() {
        let body = r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[
          {"type":"tool_result","tool_use_id":"toolu_1","content":"city unknown","is_error":true}]}]}"#;
        let canonical =
            request_to_canonical(parse_messages_request(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(canonical.messages.len(), 1);
        assert_eq!(
            canonical.messages[0].content,
            Some(MessageContent::Text("Error: city unknown".into()))
        );
    }

    #[test]
    fn server_tools_and_unknown_blocks_are_refused_with_a_path() {
        let cases = [
            (
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
                "tools[0]: Anthropic server tool `web_search_20250305` cannot be served by this route",
            ),
            (
                r#"{"model":"c","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"s","name":"web_search","input":{}}]}]}"#,
                "messages[0].content[0]: `server_tool_use` blocks cannot be served by this route",
            ),
        ];
        for (body, expected) in cases {
            let error =
                request_to_canonical(parse_messages_request(body.as_bytes()).unwrap()).unwrap_err();
            assert_eq!(error.message(), expected);
        }
    }

    #[test]
    fn canonical_response_becomes_a_message() {
        let completion: ChatCompletion = serde_json::from_str(
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
                "choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","tool_calls":[
                  {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
                  "finish_reason":"tool_calls"}],
                "usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":64}}}"#,
        )
        .unwrap();
        let message = response_from_canonical(completion);
        let value = serde_json::to_value(&message).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
              "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
              "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}],
              "stop_reason": "tool_use", "stop_sequence": null,
              "usage": {"input_tokens": 18, "output_tokens": 17, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64}
            })
        );
    }
}
