//! Inbound API surfaces (OpenAI and Anthropic): wire types, request decoding, and encoders back to each surface.

pub mod anthropic;
pub mod anthropic_bridge;
pub mod encode;
pub mod json;
pub mod openai;

pub use json::{RequestError, parse_body};

/// Decodes and validates a `/v1/chat/completions` body.
pub fn parse_chat_request(body: &[u8]) -> Result<openai::ChatRequest, RequestError> {
    let request: openai::ChatRequest = parse_body(body)?;
    request.validate()?;
    Ok(request)
}

/// Decodes and validates a `/v1/messages` body.
pub fn parse_messages_request(body: &[u8]) -> Result<anthropic::MessagesRequest, RequestError> {
    let request: anthropic::MessagesRequest = parse_body(body)?;
    request.validate()?;
    Ok(request)
}

/// Decodes and validates a `/v1/embeddings` body.
pub fn parse_embeddings_request(body: &[u8]) -> Result<openai::EmbeddingsRequest, RequestError> {
    let request: openai::EmbeddingsRequest = parse_body(body)?;
    request.validate()?;
    Ok(request)
}
