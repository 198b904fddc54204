//! Every way a request can fail, with its HTTP status, retry class, origin, metric label and client bodies.
//!
//! One enum for the whole pipeline. Client-facing messages are written here and never contain provider
//! bodies, provider keys or the caller's key: upstream failures are rendered from their classification only.

use std::time::Duration;

use http::StatusCode;

use crate::api::{RequestError, anthropic, openai};
use crate::providers::{TranslateError, UpstreamError};
use crate::upstream::TransportError;

/// `Result` with [`GatewayError`].
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// Which API surface a request came in on; decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`: `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `/v1/messages`: `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request or its credentials.
    Client,
    /// A provider or the network to it.
    Upstream,
    /// Sluice itself (configuration not loaded, a bug).
    Gateway,
}

impl Origin {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Upstream => "upstream",
            Origin::Gateway => "gateway",
        }
    }
}

/// Why a presented virtual key was refused. Each reason has its own message; none echoes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// No `Authorization: Bearer` or `x-api-key` header.
    Missing,
    /// The key matches no published hash.
    Unknown,
    /// The key's `expiresAt` has passed.
    Expired,
    /// The key is disabled.
    Disabled,
    /// A previous value of a rotated key, after its grace period.
    Rotated,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no configuration has been loaded yet")]
    ConfigNotLoaded,
    #[error("unknown endpoint {method} {path}")]
    UnknownEndpoint { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading the request body failed: {0}")]
    ReadBody(String),
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    #[error("api key refused: {0:?}")]
    Unauthorized(KeyRejection),
    #[error("model {model:?} does not exist")]
    ModelNotFound { model: String },
    #[error("the key may not use model {model:?}")]
    ModelNotAllowed { model: String },
    #[error("no backend of route {route} may serve this request: {reason}")]
    NoEligibleBackend { route: String, reason: &'static str },
    #[error("{0}")]
    Translate(#[from] TranslateError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("the request exceeded its total timeout of {0:?}")]
    TotalTimeout(Duration),
    /// Every candidate's circuit breaker is open: fail fast instead of queueing on dead backends.
    #[error("every backend of route {route} is unavailable (circuit open)")]
    CircuitOpen {
        route: String,
        retry_after: Duration,
    },
    /// Refused by the route's or key's policy (guardrails, PII, data residency).
    #[error("{0}")]
    Policy(#[from] crate::guardrails::PolicyError),
    /// A key's or route's requests- or tokens-per-minute limit (`x-ratelimit-*` in `headers`).
    #[error("{scope} rate limit on {limit} per minute reached")]
    RateLimited {
        scope: &'static str,
        limit: &'static str,
        retry_after: Duration,
        headers: Box<http::HeaderMap>,
    },
    /// A budget with action `block` cannot cover the request's maximum cost.
    #[error("budget {budget} is exhausted")]
    BudgetExceeded {
        budget: String,
        retry_after: Option<Duration>,
    },
    /// A fail-closed budget has no grant from the operator yet.
    #[error("budget {budget} cannot be checked: no grant from the operator")]
    BudgetUnavailable { budget: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The client-facing rendering of an error: status, message and the type/code fields of both surfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI `error.type`.
    pub openai_type: &'static str,
    /// OpenAI `error.code`.
    pub code: Option<&'static str>,
    /// OpenAI `error.param`.
    pub param: Option<&'static str>,
}

impl GatewayError {
    /// Who caused the failure.
    pub fn origin(&self) -> Origin {
        match self {
            GatewayError::ConfigNotLoaded
            | GatewayError::Internal(_)
            | GatewayError::BudgetUnavailable { .. }
            | GatewayError::NoEligibleBackend { .. } => Origin::Gateway,
            GatewayError::Translate(error) if error.status() >= 500 => Origin::Gateway,
            GatewayError::Upstream(error) if error.kind.is_client_fault() => Origin::Client,
            GatewayError::Policy(error) if !error.is_client_fault() => Origin::Upstream,
            GatewayError::Upstream(_)
            | GatewayError::Transport(_)
            | GatewayError::TotalTimeout(_)
            | GatewayError::CircuitOpen { .. } => Origin::Upstream,
            _ => Origin::Client,
        }
    }

    /// Whether the same request may succeed on another attempt (later or on another backend).
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::Upstream(error) => error.is_retryable(),
            GatewayError::Transport(error) => error.is_retryable(),
            _ => false,
        }
    }

    /// A stable, low-cardinality label for `sluice_errors_total{class}` and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            GatewayError::ConfigNotLoaded => "config_not_loaded",
            GatewayError::UnknownEndpoint { .. } => "unknown_endpoint",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::ReadBody(_) => "read_body",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::Unauthorized(KeyRejection::Missing) => "missing_key",
            GatewayError::Unauthorized(KeyRejection::Unknown) => "invalid_key",
            GatewayError::Unauthorized(KeyRejection::Expired) => "expired_key",
            GatewayError::Unauthorized(KeyRejection::Disabled) => "disabled_key",
            GatewayError::Unauthorized(KeyRejection::Rotated) => "rotated_key",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::NoEligibleBackend { .. } => "no_eligible_backend",
            GatewayError::Translate(_) => "translate",
            GatewayError::Upstream(error) => match error.kind.as_str() {
                "rate_limited" => "upstream_rate_limited",
                "quota_exceeded" => "upstream_quota_exceeded",
                "context_length_exceeded" => "upstream_context_length",
                "content_filter" => "upstream_content_filter",
                "overloaded" => "upstream_overloaded",
                "timeout" => "upstream_timeout",
                "auth" => "upstream_auth",
                "not_found" => "upstream_not_found",
                "bad_request" => "upstream_bad_request",
                "protocol" => "upstream_protocol",
                _ => "upstream_server",
            },
            GatewayError::Transport(error) => error.metric_label(),
            GatewayError::TotalTimeout(_) => "total_timeout",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::Policy(error) => error.metric_label(),
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::BudgetUnavailable { .. } => "budget_unavailable",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// The provider's (or our own) hint for when to try again, sent as `retry-after`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Upstream(error) => error.retry_after,
            GatewayError::ConfigNotLoaded => Some(Duration::from_secs(1)),
            GatewayError::CircuitOpen { retry_after, .. } => Some(*retry_after),
            GatewayError::RateLimited { retry_after, .. } => Some(*retry_after),
            GatewayError::BudgetExceeded { retry_after, .. } => *retry_after,
            GatewayError::BudgetUnavailable { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// Headers the error response carries besides `retry-after` (`x-ratelimit-*` of a rate limit).
    pub fn headers(&self) -> Option<&http::HeaderMap> {
        match self {
            GatewayError::RateLimited { headers, .. } => Some(headers),
            _ => None,
        }
    }

    /// HTTP status on `surface` (Anthropic's surface answers provider overload with 529, as Anthropic does).
    pub fn status(&self, surface: Surface) -> StatusCode {
        if let (GatewayError::Upstream(error), Surface::Anthropic) = (self, surface) {
            return StatusCode::from_u16(error.client_error().anthropic_status)
                .unwrap_or(StatusCode::BAD_GATEWAY);
        }
        self.render().status
    }

    /// Status, message and OpenAI type/code, independent of the surface.
    pub fn render(&self) -> Rendered {
        use StatusCode as S;
        let plain = |status, message: String, openai_type, code| Rendered {
            status,
            message,
            openai_type,
            code,
            param: None,
        };
        match self {
            GatewayError::ConfigNotLoaded => plain(
                S::SERVICE_UNAVAILABLE,
                "The gateway has not loaded its configuration yet; retry shortly.".into(),
                "server_error",
                Some("not_ready"),
            ),
            GatewayError::UnknownEndpoint { method, path } => plain(
                S::NOT_FOUND,
                format!("Invalid URL ({method} {path})."),
                "invalid_request_error",
                Some("unknown_url"),
            ),
            GatewayError::MethodNotAllowed { method, path } => plain(
                S::METHOD_NOT_ALLOWED,
                format!("Method {method} is not allowed on {path}."),
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            GatewayError::BodyTooLarge { limit } => plain(
                S::PAYLOAD_TOO_LARGE,
                format!("The request body exceeds the gateway's limit of {limit} bytes."),
                "invalid_request_error",
                Some("request_too_large"),
            ),
            GatewayError::ReadBody(_) => plain(
                S::BAD_REQUEST,
                "The request body could not be read.".into(),
                "invalid_request_error",
                Some("invalid_body"),
            ),
            GatewayError::InvalidRequest(error) => plain(
                S::BAD_REQUEST,
                error.message().to_owned(),
                "invalid_request_error",
                Some("invalid_request"),
            ),
            GatewayError::Unauthorized(rejection) => {
                let (message, code) = match rejection {
                    KeyRejection::Missing => (
                        "Missing API key: send it as `Authorization: Bearer <key>` or in the `x-api-key` header.",
                        "missing_api_key",
                    ),
                    KeyRejection::Unknown => ("Incorrect API key provided.", "invalid_api_key"),
                    KeyRejection::Expired => (
                        "The API key has expired; ask its owner for a new one.",
                        "expired_api_key",
                    ),
                    KeyRejection::Disabled => ("The API key is disabled.", "disabled_api_key"),
                    KeyRejection::Rotated => (
                        "The API key was rotated and its grace period has ended; use the current key.",
                        "rotated_api_key",
                    ),
                };
                plain(
                    S::UNAUTHORIZED,
                    message.into(),
                    "invalid_request_error",
                    Some(code),
                )
            }
            GatewayError::ModelNotFound { model } => Rendered {
                status: S::NOT_FOUND,
                message: format!("The model `{model}` does not exist."),
                openai_type: "invalid_request_error",
                code: Some("model_not_found"),
                param: Some("model"),
            },
            GatewayError::ModelNotAllowed { model } => Rendered {
                status: S::FORBIDDEN,
                message: format!("This API key is not allowed to use the model `{model}`."),
                openai_type: "invalid_request_error",
                code: Some("model_not_allowed"),
                param: Some("model"),
            },
            GatewayError::NoEligibleBackend { reason, .. } => plain(
                S::SERVICE_UNAVAILABLE,
                format!("No backend can serve this request: {reason}."),
                "server_error",
                Some("no_backend_available"),
            ),
            GatewayError::Translate(error) => {
                let status = S::from_u16(error.status()).unwrap_or(S::INTERNAL_SERVER_ERROR);
                if status.is_client_error() {
                    plain(
                        status,
                        error.to_string(),
                        "invalid_request_error",
                        Some("unsupported_request"),
                    )
                } else {
                    plain(
                        status,
                        "The gateway could not build the upstream request.".into(),
                        "server_error",
                        Some("gateway_error"),
                    )
                }
            }
            GatewayError::Upstream(error) => {
                let client = error.client_error();
                Rendered {
                    status: S::from_u16(client.status).unwrap_or(S::BAD_GATEWAY),
                    message: client.message.to_owned(),
                    openai_type: client.openai_type,
                    code: Some(client.code),
                    param: None,
                }
            }
            GatewayError::Transport(error) => {
                let (status, message, code) = error.client_rendering();
                plain(status, message.into(), "server_error", Some(code))
            }
            GatewayError::TotalTimeout(_) => plain(
                S::GATEWAY_TIMEOUT,
                "The request did not complete within the route's total timeout.".into(),
                "server_error",
                Some("timeout"),
            ),
            GatewayError::CircuitOpen { .. } => plain(
                S::SERVICE_UNAVAILABLE,
                "Every upstream backend of this model is failing; retry after the indicated time."
                    .into(),
                "server_error",
                Some("backends_unavailable"),
            ),
            GatewayError::Policy(error) => error.render(),
            GatewayError::RateLimited {
                scope,
                limit,
                retry_after,
                ..
            } => plain(
                S::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit reached: the {scope}'s {limit} per minute are used up. Please try again in {:.1}s.",
                    retry_after.as_secs_f64()
                ),
                limit,
                Some("rate_limit_exceeded"),
            ),
            GatewayError::BudgetExceeded { budget, .. } => plain(
                S::TOO_MANY_REQUESTS,
                format!(
                    "Budget `{budget}` cannot cover this request in its current window; raise its limit or wait for the window to reset."
                ),
                "insufficient_quota",
                Some("budget_exceeded"),
            ),
            GatewayError::BudgetUnavailable { budget } => plain(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "Budget `{budget}` cannot be checked right now (fail-closed while the control plane is unreachable); retry shortly."
                ),
                "server_error",
                Some("budget_unavailable"),
            ),
            GatewayError::Internal(_) => plain(
                S::INTERNAL_SERVER_ERROR,
                "Internal gateway error.".into(),
                "server_error",
                Some("internal_error"),
            ),
        }
    }

    /// `{"error":{"message","type","param","code"}}`.
    pub fn openai_body(&self) -> Vec<u8> {
        let rendered = self.render();
        openai::error_body(
            &rendered.message,
            rendered.openai_type,
            rendered.code,
            rendered.param,
        )
    }

    /// `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_body(&self) -> Vec<u8> {
        let rendered = self.render();
        let kind = match self {
            GatewayError::Upstream(error) => error.client_error().anthropic_type,
            _ => anthropic::error_type_for_status(rendered.status.as_u16()),
        };
        anthropic::error_body(kind, &rendered.message)
    }

    /// The body for `surface`.
    pub fn body(&self, surface: Surface) -> Vec<u8> {
        match surface {
            Surface::OpenAi => self.openai_body(),
            Surface::Anthropic => self.anthropic_body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::providers::UpstreamErrorKind;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn statuses_and_origins_follow_the_table() {
        let cases: Vec<(GatewayError, u16, Origin, bool, &str)> = vec![
            (
                GatewayError::BodyTooLarge { limit: 10 },
                413,
                Origin::Client,
                false,
                "body_too_large",
            ),
            (
                GatewayError::InvalidRequest(RequestError::new("messages: missing field")),
                400,
                Origin::Client,
                false,
                "invalid_request",
            ),
            (
                GatewayError::Unauthorized(KeyRejection::Expired),
                401,
                Origin::Client,
                false,
                "expired_key",
            ),
            (
                GatewayError::ModelNotFound { model: "x".into() },
                404,
                Origin::Client,
                false,
                "model_not_found",
            ),
            (
                GatewayError::ModelNotAllowed { model: "x".into() },
                403,
                Origin::Client,
                false,
                "model_not_allowed",
            ),
            (
                GatewayError::ConfigNotLoaded,
                503,
                Origin::Gateway,
                false,
                "config_not_loaded",
            ),
            (
                GatewayError::Upstream(UpstreamError::new(
                    UpstreamErrorKind::RateLimited,
                    429,
                    "org-secret",
                )),
                429,
                Origin::Upstream,
                true,
                "upstream_rate_limited",
            ),
            (
                GatewayError::Upstream(UpstreamError::new(
                    UpstreamErrorKind::ContextLengthExceeded,
                    400,
                    "too long",
                )),
                400,
                Origin::Client,
                false,
                "upstream_context_length",
            ),
            (
                GatewayError::Transport(TransportError::Connect("refused".into())),
                502,
                Origin::Upstream,
                true,
                "upstream_connect",
            ),
            (
                GatewayError::Transport(TransportError::FirstByteTimeout(Duration::from_secs(1))),
                504,
                Origin::Upstream,
                true,
                "upstream_timeout",
            ),
        ];
        for (error, status, origin, retryable, label) in cases {
            assert_eq!(error.status(Surface::OpenAi).as_u16(), status, "{error:?}");
            assert_eq!(error.origin(), origin, "{error:?}");
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
            assert_eq!(error.metric_label(), label, "{error:?}");
        }
    }

    #[test]
    fn each_key_rejection_has_its_own_message() {
        let rejections = [
            KeyRejection::Missing,
            KeyRejection::Unknown,
            KeyRejection::Expired,
            KeyRejection::Disabled,
            KeyRejection::Rotated,
        ];
        let messages: std::collections::HashSet<String> = rejections
            .iter()
            .map(|r| GatewayError::Unauthorized(*r).render().message)
            .collect();
        assert_eq!(messages.len(), rejections.len());
    }

    #[test]
    fn bodies_have_each_surface_shape_and_no_provider_text() {
        let error = GatewayError::Upstream(UpstreamError::new(
            UpstreamErrorKind::Overloaded,
            529,
            "org-secret overloaded",
        ));
        let openai = json(&error.openai_body());
        assert_eq!(openai["error"]["code"], "upstream_overloaded");
        assert!(openai["error"]["message"].is_string());
        let anthropic = json(&error.anthropic_body());
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "overloaded_error");
        assert_eq!(error.status(Surface::Anthropic).as_u16(), 529);
        assert_eq!(error.status(Surface::OpenAi).as_u16(), 503);
        for body in [error.openai_body(), error.anthropic_body()] {
            assert!(!String::from_utf8(body).unwrap().contains("org-secret"));
        }
    }

    #[test]
    fn not_found_names_the_model_param() {
        let body = json(
            &GatewayError::ModelNotFound {
                model: "gpt-9".into(),
            }
            .openai_body(),
        );
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let anthropic = json(
            &GatewayError::ModelNotFound {
                model: "gpt-9".into(),
            }
            .anthropic_body(),
        );
        assert_eq!(anthropic["error"]["type"], "not_found_error");
    }
}
