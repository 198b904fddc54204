//! Which provider API a request path belongs to: the mock serves all four providers' paths on one port.

use std::fmt;

use http::{HeaderMap, Method};

/// The upstream APIs the mock imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`), `Authorization: Bearer`.
    OpenAi,
    /// Azure OpenAI (`/openai/deployments/{deployment}/…?api-version=…` and `/openai/v1/…`), `api-key`.
    Azure,
    /// Anthropic (`/v1/messages`, `/v1/models` with `x-api-key`).
    Anthropic,
    /// Gemini (`/v1beta/models/{model}:generateContent` and friends, also under `/v1`, which the current
    /// `google-genai` SDK uses), `x-goog-api-key` or `?key=`.
    Gemini,
}

impl Provider {
    /// Every provider, for loops in tests.
    pub const ALL: [Provider; 4] = [
        Provider::OpenAi,
        Provider::Azure,
        Provider::Anthropic,
        Provider::Gemini,
    ];

    /// A short lowercase name, as used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure-openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The operation a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI/Azure chat completions.
    ChatCompletions,
    /// OpenAI/Azure embeddings.
    Embeddings,
    /// Model listing (OpenAI, Azure v1, Anthropic, Gemini).
    Models,
    /// Anthropic messages.
    Messages,
    /// Gemini `:generateContent`.
    GenerateContent,
    /// Gemini `:streamGenerateContent` (SSE with `alt=sse`, else a streamed JSON array).
    StreamGenerateContent,
    /// Gemini `:embedContent`.
    EmbedContent,
    /// Gemini `:batchEmbedContents`.
    BatchEmbedContents,
    /// Gemini `:countTokens`.
    CountTokens,
}

/// A request path resolved to a provider operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The provider whose API the path belongs to.
    pub provider: Provider,
    /// The operation.
    pub endpoint: Endpoint,
    /// The model named in the path: a Gemini model or an Azure deployment.
    pub path_model: Option<String>,
    /// Azure's dated API (`/openai/deployments/…`), which requires `api-version`.
    pub azure_dated: bool,
}

impl Route {
    fn new(provider: Provider, endpoint: Endpoint) -> Self {
        Self {
            provider,
            endpoint,
            path_model: None,
            azure_dated: false,
        }
    }

    fn with_model(mut self, model: &str) -> Self {
        self.path_model = Some(model.to_owned());
        self
    }
}

/// Resolves a request to a provider operation, or `None` for a path no provider serves.
///
/// `GET /v1/models` is shared by OpenAI, Anthropic and Gemini; the credential headers decide.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Option<Route> {
    let post = method == Method::POST;
    let get = method == Method::GET;
    let route = match path {
        "/v1/chat/completions" if post => Route::new(Provider::OpenAi, Endpoint::ChatCompletions),
        "/v1/embeddings" if post => Route::new(Provider::OpenAi, Endpoint::Embeddings),
        "/v1/messages" if post => Route::new(Provider::Anthropic, Endpoint::Messages),
        "/v1/models" if get => {
            let provider =
                if headers.contains_key("x-api-key") || headers.contains_key("anthropic-version") {
                    Provider::Anthropic
                } else if headers.contains_key("x-goog-api-key") {
                    Provider::Gemini
                } else {
                    Provider::OpenAi
                };
            Route::new(provider, Endpoint::Models)
        }
        "/openai/v1/chat/completions" if post => {
            Route::new(Provider::Azure, Endpoint::ChatCompletions)
        }
        "/openai/v1/embeddings" if post => Route::new(Provider::Azure, Endpoint::Embeddings),
        "/openai/v1/models" if get => Route::new(Provider::Azure, Endpoint::Models),
        "/v1beta/models" if get => Route::new(Provider::Gemini, Endpoint::Models),
        _ => return classify_parameterised(post, path),
    };
    Some(route)
}

fn classify_parameterised(post: bool, path: &str) -> Option<Route> {
    if !post {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, operation) = rest.split_once('/')?;
        let endpoint = match operation {
            "chat/completions" => Endpoint::ChatCompletions,
            "embeddings" => Endpoint::Embeddings,
            _ => return None,
        };
        if deployment.is_empty() {
            return None;
        }
        let mut route = Route::new(Provider::Azure, endpoint).with_model(deployment);
        route.azure_dated = true;
        return Some(route);
    }
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let endpoint = match method {
        "generateContent" => Endpoint::GenerateContent,
        "streamGenerateContent" => Endpoint::StreamGenerateContent,
        "embedContent" => Endpoint::EmbedContent,
        "batchEmbedContents" => Endpoint::BatchEmbedContents,
        "countTokens" => Endpoint::CountTokens,
        _ => return None,
    };
    if model.is_empty() || model.contains('/') {
        return None;
    }
    Some(Route::new(Provider::Gemini, endpoint).with_model(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Option<(Provider, Endpoint, Option<String>)> {
        classify(&method, path, &HeaderMap::new()).map(|r| (r.provider, r.endpoint, r.path_model))
    }

    #[test]
    fn resolves_every_provider_path() {
        use Endpoint::*;
        use Provider::*;
        let cases = [
            (
                Method::POST,
                "/v1/chat/completions",
                Some((OpenAi, ChatCompletions, None)),
            ),
            (
                Method::POST,
                "/v1/embeddings",
                Some((OpenAi, Embeddings, None)),
            ),
            (Method::GET, "/v1/models", Some((OpenAi, Models, None))),
            (
                Method::POST,
                "/v1/messages",
                Some((Anthropic, Messages, None)),
            ),
            (
                Method::POST,
                "/openai/deployments/gpt4o-prod/chat/completions",
                Some((Azure, ChatCompletions, Some("gpt4o-prod".to_owned()))),
            ),
            (
                Method::POST,
                "/openai/deployments/emb/embeddings",
                Some((Azure, Embeddings, Some("emb".to_owned()))),
            ),
            (
                Method::POST,
                "/openai/v1/chat/completions",
                Some((Azure, ChatCompletions, None)),
            ),
            (
                Method::POST,
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Some((
                    Gemini,
                    StreamGenerateContent,
                    Some("gemini-2.5-flash".to_owned()),
                )),
            ),
            (
                Method::POST,
                "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                Some((
                    Gemini,
                    BatchEmbedContents,
                    Some("gemini-embedding-001".to_owned()),
                )),
            ),
            (Method::GET, "/v1beta/models", Some((Gemini, Models, None))),
            (
                Method::POST,
                "/v1/models/gemini-2.5-flash:generateContent",
                Some((Gemini, GenerateContent, Some("gemini-2.5-flash".to_owned()))),
            ),
            (Method::GET, "/v1/chat/completions", None),
            (Method::POST, "/v1/completions", None),
            (Method::POST, "/openai/deployments//chat/completions", None),
            (Method::POST, "/v1beta/models/gemini:fly", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), expected, "{path}");
        }
    }

    #[test]
    fn anthropic_headers_claim_the_shared_models_path() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-version",
            http::HeaderValue::from_static("2023-06-01"),
        );
        let route = classify(&Method::GET, "/v1/models", &headers).unwrap();
        assert_eq!(route.provider, Provider::Anthropic);
    }
}
