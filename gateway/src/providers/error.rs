//! Upstream failures classified for retry, fallback, metrics and client responses, and request translation errors.
//!
//! A provider's own error message is kept for logs only: client bodies are built from the classification.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;

use crate::api::{anthropic, openai};

/// What went wrong upstream, coarse enough for metric labels and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// 429 from a request/token rate limit: retry later or elsewhere.
    RateLimited,
    /// The gateway's provider account is out of quota or credit: retrying the same backend is pointless.
    QuotaExceeded,
    /// The prompt does not fit the model: every backend of the same model will refuse it.
    ContextLengthExceeded,
    /// The provider's safety system refused the prompt.
    ContentFilter,
    /// Anthropic 529, 503s: the provider is shedding load.
    Overloaded,
    /// The provider timed out (408, 504, Gemini `DEADLINE_EXCEEDED`).
    Timeout,
    /// The gateway's provider credentials were rejected.
    Auth,
    /// The configured model or deployment does not exist upstream.
    NotFound,
    /// The provider rejected the request as invalid.
    BadRequest,
    /// 5xx and other provider-side failures.
    Server,
    /// The provider answered something the gateway could not understand, or a stream ended early.
    Protocol,
}

impl UpstreamErrorKind {
    /// A stable, low-cardinality label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::RateLimited => "rate_limited",
            UpstreamErrorKind::QuotaExceeded => "quota_exceeded",
            UpstreamErrorKind::ContextLengthExceeded => "context_length_exceeded",
            UpstreamErrorKind::ContentFilter => "content_filter",
            UpstreamErrorKind::Overloaded => "overloaded",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Auth => "auth",
            UpstreamErrorKind::NotFound => "not_found",
            UpstreamErrorKind::BadRequest => "bad_request",
            UpstreamErrorKind::Server => "server",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }

    /// Whether sending the same request again (after a delay, or to another backend) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::Overloaded
                | UpstreamErrorKind::Timeout
                | UpstreamErrorKind::Server
                | UpstreamErrorKind::Protocol
        )
    }

    /// Whether the request itself is at fault, so no other backend would accept it either.
    pub fn is_client_fault(self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::ContextLengthExceeded
                | UpstreamErrorKind::ContentFilter
                | UpstreamErrorKind::BadRequest
        )
    }

    /// The client-facing rendering of this kind of failure.
    pub fn client_error(self) -> ClientError {
        let (status, message, openai_type, code) = match self {
            UpstreamErrorKind::RateLimited => (
                429,
                "The upstream provider's rate limit was reached; retry later.",
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            UpstreamErrorKind::QuotaExceeded => (
                503,
                "The upstream provider's quota for this route is exhausted.",
                "server_error",
                "upstream_quota_exhausted",
            ),
            UpstreamErrorKind::ContextLengthExceeded => (
                400,
                "The request exceeds the model's maximum context length; shorten the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            UpstreamErrorKind::ContentFilter => (
                400,
                "The request was rejected by the upstream provider's content filter.",
                "invalid_request_error",
                "content_filter",
            ),
            UpstreamErrorKind::Overloaded => (
                503,
                "The upstream provider is overloaded; retry later.",
                "server_error",
                "upstream_overloaded",
            ),
            UpstreamErrorKind::Timeout => (
                504,
                "The upstream provider timed out.",
                "server_error",
                "upstream_timeout",
            ),
            UpstreamErrorKind::Auth => (
                502,
                "The gateway's credentials were rejected by the upstream provider.",
                "server_error",
                "upstream_auth_failed",
            ),
            UpstreamErrorKind::NotFound => (
                502,
                "The upstream provider does not know the configured model.",
                "server_error",
                "upstream_model_not_found",
            ),
            UpstreamErrorKind::BadRequest => (
                400,
                "The upstream provider rejected the request as invalid.",
                "invalid_request_error",
                "upstream_bad_request",
            ),
            UpstreamErrorKind::Server => (
                502,
                "The upstream provider failed to process the request.",
                "server_error",
                "upstream_error",
            ),
            UpstreamErrorKind::Protocol => (
                502,
                "The upstream provider sent an invalid or incomplete response.",
                "server_error",
                "upstream_protocol_error",
            ),
        };
        let anthropic_status = if self == UpstreamErrorKind::Overloaded {
            529
        } else {
            status
        };
        ClientError {
            status,
            anthropic_status,
            message,
            openai_type,
            code,
            anthropic_type: anthropic::error_type_for_status(anthropic_status),
        }
    }
}

impl fmt::Display for UpstreamErrorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Longest provider message kept for logs; provider bodies can be large HTML pages.
const MAX_PROVIDER_MESSAGE_CHARS: usize = 512;

/// A classified upstream failure. `Display` omits the provider's message so it cannot leak into client bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream {kind} error (status {status})")]
pub struct UpstreamError {
    /// Classification.
    pub kind: UpstreamErrorKind,
    /// Upstream HTTP status; 200 for an error delivered inside a stream.
    pub status: u16,
    /// Provider's retry hint (`retry-after-ms`, `retry-after` seconds, Gemini `RetryInfo.retryDelay`).
    pub retry_after: Option<Duration>,
    /// Provider's short error code or type (e.g. `rate_limit_exceeded`), for logs.
    pub provider_code: Option<String>,
    provider_message: String,
}

impl UpstreamError {
    /// An error of `kind` with a log-only description.
    pub fn new(kind: UpstreamErrorKind, status: u16, provider_message: impl Into<String>) -> Self {
        let mut provider_message = provider_message.into();
        if provider_message.len() > MAX_PROVIDER_MESSAGE_CHARS {
            let mut end = MAX_PROVIDER_MESSAGE_CHARS;
            while !provider_message.is_char_boundary(end) {
                end -= 1;
            }
            provider_message.truncate(end);
        }
        Self {
            kind,
            status,
            retry_after: None,
            provider_code: None,
            provider_message,
        }
    }

    /// A response or stream the gateway could not parse.
    pub fn protocol(status: u16, what: impl Into<String>) -> Self {
        Self::new(UpstreamErrorKind::Protocol, status, what)
    }

    /// Attaches the provider's error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.provider_code = code.filter(|code| !code.is_empty());
        self
    }

    /// Attaches a retry hint.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The provider's message, truncated. For logs only: never put it in a client response.
    pub fn provider_message(&self) -> &str {
        &self.provider_message
    }

    /// Whether a retry (later or elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The client-facing rendering (status, message, OpenAI and Anthropic error types).
    pub fn client_error(&self) -> ClientError {
        self.kind.client_error()
    }
}

/// How an upstream failure is shown to a client, on either API surface. Contains no provider text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientError {
    /// HTTP status on the OpenAI surface.
    pub status: u16,
    /// HTTP status on the Anthropic surface (529 for overload, as Anthropic does).
    pub anthropic_status: u16,
    pub message: &'static str,
    /// OpenAI `error.type`.
    pub openai_type: &'static str,
    /// OpenAI `error.code`.
    pub code: &'static str,
    /// Anthropic `error.type`.
    pub anthropic_type: &'static str,
}

impl ClientError {
    /// `{"error":{"message","type","param","code"}}`.
    pub fn openai_body(&self) -> Vec<u8> {
        openai::error_body(self.message, self.openai_type, Some(self.code), None)
    }

    /// `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_body(&self) -> Vec<u8> {
        anthropic::error_body(self.anthropic_type, self.message)
    }
}

/// A request that cannot be expressed for the chosen provider. Messages are about the client's own request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("{feature} is not supported by provider {provider}")]
    Unsupported {
        provider: &'static str,
        feature: String,
    },
    #[error("{field}: {problem}")]
    InvalidField { field: String, problem: String },
    /// The backend description is unusable (bad endpoint or header value): a gateway configuration problem.
    #[error("invalid backend target: {0}")]
    InvalidTarget(String),
    #[error("encode upstream request body: {0}")]
    EncodeBody(String),
}

impl TranslateError {
    /// HTTP status for the client: 400 when the request is at fault, 500 when the gateway is.
    pub fn status(&self) -> u16 {
        match self {
            TranslateError::Unsupported { .. } | TranslateError::InvalidField { .. } => 400,
            TranslateError::InvalidTarget(_) | TranslateError::EncodeBody(_) => 500,
        }
    }

    pub(crate) fn unsupported(provider: &'static str, feature: impl Into<String>) -> Self {
        TranslateError::Unsupported {
            provider,
            feature: feature.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        TranslateError::InvalidField {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<serde_json::Error> for TranslateError {
    fn from(error: serde_json::Error) -> Self {
        TranslateError::EncodeBody(error.to_string())
    }
}

/// Reads the retry hint headers both OpenAI and Anthropic send: `retry-after-ms`, then `retry-after` in seconds.
///
/// HTTP-date forms of `retry-after` are ignored: providers send seconds.
pub fn retry_after_from_headers(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(millis) = read("retry-after-ms").and_then(|value| value.trim().parse::<f64>().ok())
    {
        return duration_from_secs(millis / 1000.0);
    }
    read("retry-after")
        .and_then(|value| value.trim().parse::<f64>().ok())
        .and_then(duration_from_secs)
}

/// Parses a protobuf JSON duration such as `"37s"` or `"0.5s"` (Gemini's `retryDelay`).
pub fn parse_proto_duration(value: &str) -> Option<Duration> {
    value
        .strip_suffix('s')
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .and_then(duration_from_secs)
}

fn duration_from_secs(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Classification shared by all providers when nothing more specific is known.
pub(crate) fn kind_for_status(status: u16) -> UpstreamErrorKind {
    match status {
        401 | 403 => UpstreamErrorKind::Auth,
        404 => UpstreamErrorKind::NotFound,
        408 | 504 => UpstreamErrorKind::Timeout,
        409 => UpstreamErrorKind::Server,
        413 => UpstreamErrorKind::BadRequest,
        429 => UpstreamErrorKind::RateLimited,
        503 | 529 => UpstreamErrorKind::Overloaded,
        400..=499 => UpstreamErrorKind::BadRequest,
        _ => UpstreamErrorKind::Server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn display_and_client_bodies_never_carry_the_provider_message() {
        let error = UpstreamError::new(
            UpstreamErrorKind::RateLimited,
            429,
            "Rate limit reached for gpt-4o in organization org-secret",
        );
        assert!(!error.to_string().contains("org-secret"));
        let client = error.client_error();
        for body in [client.openai_body(), client.anthropic_body()] {
            assert!(!String::from_utf8(body).unwrap().contains("org-secret"));
        }
        assert_eq!(
            error.provider_message(),
            "Rate limit reached for gpt-4o in organization org-secret"
        );
    }

    #[test]
    fn overload_is_529_on_the_anthropic_surface_only() {
        let client = UpstreamErrorKind::Overloaded.client_error();
        assert_eq!((client.status, client.anthropic_status), (503, 529));
        assert_eq!(client.anthropic_type, "overloaded_error");
    }

    #[test]
    fn retry_hints_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("13"));
        assert_eq!(
            retry_after_from_headers(&headers),
            Some(Duration::from_secs(13))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("644"));
        assert_eq!(
            retry_after_from_headers(&headers),
            Some(Duration::from_millis(644))
        );
        assert_eq!(parse_proto_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(parse_proto_duration("soon"), None);
    }

    #[test]
    fn long_provider_messages_are_truncated_on_a_char_boundary() {
        let error = UpstreamError::new(UpstreamErrorKind::Server, 500, "é".repeat(600));
        assert!(error.provider_message().len() <= MAX_PROVIDER_MESSAGE_CHARS);
    }
}
