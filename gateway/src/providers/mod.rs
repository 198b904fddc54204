//! Provider adapters: pure translation between the canonical (OpenAI-shaped) model and each upstream API.
//!
//! Per attempt: [`build_chat_request`] → send → on 2xx [`parse_chat_response`], otherwise
//! [`parse_error_response`]; when streaming, a [`StreamTranslator`] is fed the upstream body chunk by chunk and
//! yields canonical `chat.completion.chunk`s. Nothing here performs I/O.

pub mod anthropic;
pub mod azure;
pub mod error;
pub mod gemini;
#[cfg(test)]
mod matrix_tests;
pub mod media;
pub mod openai;
pub mod openai_compatible;
pub mod passthrough;
pub mod sse;
pub mod usage;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use crate::api::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, ChunkChoice, EmbeddingsRequest,
    EmbeddingsUsage, OBJECT_CHAT_COMPLETION_CHUNK, Usage,
};
pub use error::{ClientError, TranslateError, UpstreamError, UpstreamErrorKind};
use sse::{SseEvent, SseParser};

/// The upstream APIs the gateway can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    AzureOpenAi,
    Anthropic,
    Gemini,
    OpenAiCompatible,
}

impl ProviderKind {
    /// The configuration and metric-label name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::AzureOpenAi => "azure-openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(ProviderKind::OpenAi),
            "azure-openai" => Some(ProviderKind::AzureOpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            "openai-compatible" => Some(ProviderKind::OpenAiCompatible),
            _ => None,
        }
    }

    /// The public endpoint used when a backend names none (Azure and OpenAI-compatible have no default).
    ///
    /// Endpoints follow each official SDK's base URL: OpenAI's includes `/v1`, Anthropic's and Gemini's are
    /// the bare host (the adapters append `/v1/messages` and `/v1beta/models/…`).
    pub fn default_endpoint(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A provider API key. `Debug` redacts it and there is no `Display`/`Serialize`, so it cannot reach logs or bodies.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret, for building the auth header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiKey(<redacted>)")
    }
}

/// Anthropic requires `max_tokens`; used when neither the client nor the backend sets one. Every current Claude
/// model accepts 4096 output tokens.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Where and how one backend is reached; the compiled config maps to this.
#[derive(Debug, Clone)]
pub struct BackendTarget {
    pub provider: ProviderKind,
    /// Base URL, without trailing slash needed (see [`ProviderKind::default_endpoint`]). Azure:
    /// `https://{resource}.openai.azure.com`; OpenAI-compatible: the server's `/v1` base.
    pub endpoint: String,
    /// Upstream model name. Azure: the deployment name unless `deployment` is set.
    pub model: String,
    /// Azure deployment (defaults to `model`).
    pub deployment: Option<String>,
    /// Azure dated `api-version` (classic `/openai/deployments/…` URLs); `None` selects the `/openai/v1` API.
    pub api_version: Option<String>,
    /// Secret; optional for OpenAI-compatible servers without auth.
    pub api_key: Option<ApiKey>,
    /// Output bound used for Anthropic when the request sets none.
    pub default_max_tokens: u32,
    /// Extra headers sent upstream (`anthropic-beta`, `OpenAI-Organization`, …).
    pub headers: HeaderMap,
}

impl BackendTarget {
    /// A target with defaults for the optional parts.
    pub fn new(
        provider: ProviderKind,
        endpoint: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            endpoint: endpoint.into(),
            model: model.into(),
            deployment: None,
            api_version: None,
            api_key: None,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            headers: HeaderMap::new(),
        }
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    pub(crate) fn url(&self, path: &str) -> String {
        let base = self.endpoint.trim_end_matches('/');
        let mut url = String::with_capacity(base.len() + path.len());
        url.push_str(base);
        url.push_str(path);
        url
    }

    pub(crate) fn require_key(&self) -> Result<&ApiKey, TranslateError> {
        self.api_key.as_ref().ok_or_else(|| {
            TranslateError::InvalidTarget(format!("provider {} needs an API key", self.provider))
        })
    }
}

/// A ready-to-send upstream request.
pub type UpstreamRequest = http::Request<Bytes>;

/// How a provider authenticates.
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <key>`.
    Bearer(Option<&'a ApiKey>),
    /// The key verbatim in a provider-specific header (`api-key`, `x-api-key`, `x-goog-api-key`).
    Header(&'static str, &'a ApiKey),
}

/// A JSON `POST` with the auth header marked sensitive and the target's extra headers.
pub(crate) fn json_post(
    target: &BackendTarget,
    url: String,
    auth: Auth<'_>,
    extra: &[(&'static str, &'static str)],
    body: Vec<u8>,
) -> Result<UpstreamRequest, TranslateError> {
    let mut request = http::Request::builder()
        .method(Method::POST)
        .uri(url)
        .body(Bytes::from(body))
        .map_err(|error| TranslateError::InvalidTarget(format!("endpoint: {error}")))?;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (name, secret) = match auth {
        Auth::Bearer(None) => (None, String::new()),
        Auth::Bearer(Some(key)) => (
            Some(http::header::AUTHORIZATION),
            format!("Bearer {}", key.expose()),
        ),
        Auth::Header(name, key) => (Some(HeaderName::from_static(name)), key.expose().to_owned()),
    };
    if let Some(name) = name {
        let mut value = HeaderValue::from_str(&secret).map_err(|_| {
            TranslateError::InvalidTarget(
                "api key contains characters not allowed in a header".into(),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    for (name, value) in extra {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    for (name, value) in &target.headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(request)
}

/// Seconds since the Unix epoch, for `created` on responses of providers that do not send one.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

/// Builds the upstream chat request for `target` from the canonical request.
pub fn build_chat_request(
    target: &BackendTarget,
    request: &ChatRequest,
) -> Result<UpstreamRequest, TranslateError> {
    match target.provider {
        ProviderKind::OpenAi => openai::build_chat_request(target, request),
        ProviderKind::AzureOpenAi => azure::build_chat_request(target, request),
        ProviderKind::OpenAiCompatible => openai_compatible::build_chat_request(target, request),
        ProviderKind::Anthropic => anthropic::build_chat_request(target, request),
        ProviderKind::Gemini => gemini::build_chat_request(target, request),
    }
}

/// Parses a successful (2xx) non-streaming response into the canonical response.
///
/// `created` is used by providers that do not send a timestamp (Anthropic, Gemini).
pub fn parse_chat_response(
    provider: ProviderKind,
    body: &[u8],
    created: u64,
) -> Result<ChatCompletion, UpstreamError> {
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
            openai::parse_chat_response(body)
        }
        ProviderKind::Anthropic => anthropic::parse_chat_response(body, created),
        ProviderKind::Gemini => gemini::parse_chat_response(body, created),
    }
}

/// Classifies a non-2xx upstream response.
pub fn parse_error_response(
    provider: ProviderKind,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> UpstreamError {
    match provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
            openai::parse_error(status, headers, body)
        }
        ProviderKind::Anthropic => anthropic::parse_error(status, headers, body),
        ProviderKind::Gemini => gemini::parse_error(status, headers, body),
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

/// Builds the upstream embeddings request; Anthropic has no embeddings API.
pub fn build_embeddings_request(
    target: &BackendTarget,
    request: &EmbeddingsRequest,
) -> Result<UpstreamRequest, TranslateError> {
    match target.provider {
        ProviderKind::OpenAi => openai::build_embeddings_request(target, request),
        ProviderKind::AzureOpenAi => azure::build_embeddings_request(target, request),
        ProviderKind::OpenAiCompatible => {
            openai_compatible::build_embeddings_request(target, request)
        }
        ProviderKind::Gemini => gemini::build_embeddings_request(target, request),
        ProviderKind::Anthropic => Err(TranslateError::unsupported("anthropic", "embeddings")),
    }
}

/// An OpenAI-shaped embeddings response body ready for the client, and its usage for metering.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsOutcome {
    pub body: Bytes,
    pub usage: EmbeddingsUsage,
}

/// Turns a successful embeddings response into the OpenAI shape. OpenAI-family bodies pass through unchanged
/// (only `usage` is read); Gemini's are translated, which needs the original request.
pub fn parse_embeddings_response(
    provider: ProviderKind,
    request: &EmbeddingsRequest,
    body: Bytes,
) -> Result<EmbeddingsOutcome, UpstreamError> {
    match provider {
        ProviderKind::Gemini => gemini::parse_embeddings_response(request, &body),
        _ => openai::parse_embeddings_response(body),
    }
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One translated stream item.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "chunks are the common case; boxing them would allocate once more per chunk"
)]
pub enum StreamItem {
    /// A canonical chunk. The usage chunk (empty `choices`, `usage` set) is always produced when the upstream
    /// reports usage; the outbound encoder decides whether the client sees it.
    Chunk(ChatCompletionChunk),
    /// The upstream failed mid-stream (error event inside a 200, or a cut stream). Nothing follows it.
    Error(UpstreamError),
}

/// Where a stream decoder stands after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    Continue,
    Complete,
    Failed,
}

#[derive(Debug)]
enum Decoder {
    OpenAi(openai::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
}

impl Decoder {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<StreamItem>) -> Progress {
        match self {
            Decoder::OpenAi(decoder) => decoder.on_event(event, out),
            Decoder::Anthropic(decoder) => decoder.on_event(event, out),
            Decoder::Gemini(decoder) => decoder.on_event(event, out),
        }
    }

    fn on_eof(&mut self, out: &mut Vec<StreamItem>) -> Progress {
        match self {
            Decoder::OpenAi(decoder) => decoder.on_eof(out),
            Decoder::Anthropic(decoder) => decoder.on_eof(out),
            Decoder::Gemini(decoder) => decoder.on_eof(out),
        }
    }
}

/// Turns a provider's streamed body (fed in arbitrary chunks) into canonical chunks.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: SseParser,
    decoder: Decoder,
    progress: Progress,
    usage: Option<Usage>,
}

impl StreamTranslator {
    /// A translator for a stream from `provider`; `created` stamps chunks of providers that send no timestamp.
    pub fn new(provider: ProviderKind, created: u64) -> Self {
        let decoder = match provider {
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => {
                Decoder::OpenAi(openai::StreamDecoder::default())
            }
            ProviderKind::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new(created)),
            ProviderKind::Gemini => Decoder::Gemini(gemini::StreamDecoder::new(created)),
        };
        Self {
            parser: SseParser::new(),
            decoder,
            progress: Progress::Continue,
            usage: None,
        }
    }

    /// Feeds upstream body bytes; appends any completed items to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<StreamItem>) {
        if self.progress != Progress::Continue {
            return;
        }
        let start = out.len();
        let Self {
            parser,
            decoder,
            progress,
            ..
        } = self;
        let parsed = parser.feed(bytes, |event| {
            if *progress == Progress::Continue {
                *progress = decoder.on_event(event, out);
            }
        });
        if let Err(error) = parsed {
            out.push(StreamItem::Error(UpstreamError::protocol(
                200,
                error.to_string(),
            )));
            self.progress = Progress::Failed;
        }
        self.track_usage(start, out);
    }

    /// Signals the end of the upstream body. Appends an error item if the stream ended before completing.
    pub fn finish(&mut self, out: &mut Vec<StreamItem>) {
        if self.progress != Progress::Continue {
            return;
        }
        let start = out.len();
        let Self {
            parser,
            decoder,
            progress,
            ..
        } = self;
        let parsed = parser.finish(|event| {
            if *progress == Progress::Continue {
                *progress = decoder.on_event(event, out);
            }
        });
        if let Err(error) = parsed {
            out.push(StreamItem::Error(UpstreamError::protocol(
                200,
                error.to_string(),
            )));
            self.progress = Progress::Failed;
        } else if self.progress == Progress::Continue {
            self.progress = self.decoder.on_eof(out);
        }
        self.track_usage(start, out);
    }

    /// The last usage the upstream reported, for metering (also after a failure, when partial usage is known).
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// Whether the upstream completed the stream properly.
    pub fn is_complete(&self) -> bool {
        self.progress == Progress::Complete
    }

    /// Whether the stream failed (an error item was emitted).
    pub fn is_failed(&self) -> bool {
        self.progress == Progress::Failed
    }

    fn track_usage(&mut self, start: usize, out: &[StreamItem]) {
        for item in &out[start..] {
            if let StreamItem::Chunk(ChatCompletionChunk {
                usage: Some(usage), ..
            }) = item
            {
                self.usage = Some(usage.clone());
            }
        }
    }
}

/// The fields every chunk of one translated stream repeats.
#[derive(Debug, Default)]
pub(crate) struct ChunkHeader {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkHeader {
    pub(crate) fn chunk(
        &self,
        choices: Vec<ChunkChoice>,
        usage: Option<Usage>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: OBJECT_CHAT_COMPLETION_CHUNK.to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            system_fingerprint: None,
            service_tier: None,
        }
    }
}
