//! OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI, …): OpenAI's wire format, optional Bearer auth,
//! and the output bound sent as `max_tokens`, the one field every such server understands.

use super::openai::{BodyShape, encode_chat_body, encode_embeddings_body};
use super::{Auth, BackendTarget, TranslateError, UpstreamRequest, json_post};
use crate::api::openai::{ChatRequest, EmbeddingsRequest};

/// `POST {endpoint}/chat/completions`.
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = encode_chat_body(
        request,
        &BodyShape {
            model: Some(&target.model),
            legacy_max_tokens: true,
        },
    )?;
    json_post(
        target,
        target.url("/chat/completions"),
        Auth::Bearer(target.api_key.as_ref()),
        &[],
        body,
    )
}

/// `POST {endpoint}/embeddings`.
pub fn build_embeddings_request(
    target: &BackendTarget,
    request: &EmbeddingsRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let body = encode_embeddings_body(request, Some(&target.model))?;
    json_post(
        target,
        target.url("/embeddings"),
        Auth::Bearer(target.api_key.as_ref()),
        &[],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ProviderKind, build_chat_request as build};
    use serde_json::Value;

    #[test]
    fn keyless_server_gets_legacy_max_tokens() {
        let target = BackendTarget::new(
            ProviderKind::OpenAiCompatible,
            "http://vllm:8000/v1",
            "meta-llama/Llama-3.1-8B",
        );
        let request: ChatRequest = serde_json::from_str(
            r#"{"model":"alias","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":64,"top_k":20}"#,
        )
        .unwrap();
        let upstream = build(&target, &request).unwrap();
        assert_eq!(upstream.uri(), "http://vllm:8000/v1/chat/completions");
        assert!(upstream.headers().get("authorization").is_none());
        let body: Value = serde_json::from_slice(upstream.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model":"meta-llama/Llama-3.1-8B","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"top_k":20})
        );
    }
}
