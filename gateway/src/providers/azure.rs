//! Azure OpenAI upstream: OpenAI's bodies and streams behind deployment URLs and the `api-key` header.
//!
//! With a dated `api_version` the classic `/openai/deployments/{deployment}/…?api-version=` URL is used and the
//! body carries no `model`; without one, the v1 API (`/openai/v1/…`) with `model` = deployment name.

use super::openai::{BodyShape, encode_chat_body, encode_embeddings_body};
use super::{Auth, BackendTarget, TranslateError, UpstreamRequest, json_post};
use crate::api::openai::{ChatRequest, EmbeddingsRequest};

/// Chat completions on a deployment.
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let deployment = deployment(target);
    let classic = target.api_version.is_some();
    let body = encode_chat_body(
        request,
        &BodyShape {
            model: (!classic).then_some(deployment),
            legacy_max_tokens: false,
        },
    )?;
    json_post(
        target,
        url(target, "chat/completions"),
        Auth::Header("api-key", target.require_key()?),
        &[],
        body,
    )
}

/// Embeddings on a deployment.
pub fn build_embeddings_request(
    target: &BackendTarget,
    request: &EmbeddingsRequest,
) -> Result<UpstreamRequest, TranslateError> {
    let classic = target.api_version.is_some();
    let body = encode_embeddings_body(request, (!classic).then_some(deployment(target)))?;
    json_post(
        target,
        url(target, "embeddings"),
        Auth::Header("api-key", target.require_key()?),
        &[],
        body,
    )
}

fn deployment(target: &BackendTarget) -> &str {
    target.deployment.as_deref().unwrap_or(&target.model)
}

fn url(target: &BackendTarget, operation: &str) -> String {
    match &target.api_version {
        Some(version) => target.url(&format!(
            "/openai/deployments/{}/{operation}?api-version={version}",
            deployment(target)
        )),
        None => target.url(&format!("/openai/v1/{operation}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{
        ApiKey, ProviderKind, build_chat_request as build,
        build_embeddings_request as build_embeddings,
    };
    use serde_json::Value;

    fn target(api_version: Option<&str>) -> BackendTarget {
        let mut target = BackendTarget::new(
            ProviderKind::AzureOpenAi,
            "https://res.openai.azure.com",
            "gpt-4o",
        )
        .with_api_key(ApiKey::new("azure-secret"));
        target.deployment = Some("prod-gpt4o".into());
        target.api_version = api_version.map(str::to_owned);
        target
    }

    #[test]
    fn classic_and_v1_urls_and_bodies() {
        let request: ChatRequest = serde_json::from_str(
            r#"{"model":"alias","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let classic = build(&target(Some("2024-10-21")), &request).unwrap();
        assert_eq!(
            classic.uri(),
            "https://res.openai.azure.com/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(classic.headers()["api-key"], "azure-secret");
        assert!(classic.headers()["api-key"].is_sensitive());
        assert!(classic.headers().get("authorization").is_none());
        let body: Value = serde_json::from_slice(classic.body()).unwrap();
        assert!(body.get("model").is_none());

        let v1 = build(&target(None), &request).unwrap();
        assert_eq!(
            v1.uri(),
            "https://res.openai.azure.com/openai/v1/chat/completions"
        );
        let body: Value = serde_json::from_slice(v1.body()).unwrap();
        assert_eq!(body["model"], "prod-gpt4o");

        let embeddings: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"alias","input":"a"}"#).unwrap();
        let upstream = build_embeddings(&target(Some("2024-10-21")), &embeddings).unwrap();
        assert_eq!(
            upstream.uri(),
            "https://res.openai.azure.com/openai/deployments/prod-gpt4o/embeddings?api-version=2024-10-21"
        );
    }
}
