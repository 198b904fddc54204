//! The attempt loop: try a route's candidates in order until one answers, within its retry policy and
//! total timeout. One attempt = translate → send → classify. Nothing is sent to the client until an
//! attempt has succeeded, so any failure up to that point (including an error event at the start of a
//! 200 stream) can still move on to the next backend.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::TransportError;
use super::policy::{backoff, should_retry};
use crate::api::openai::{ChatCompletion, ChatRequest, EmbeddingsRequest};
use crate::config::{Backend, Route};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::providers::{self, EmbeddingsOutcome, StreamItem, StreamTranslator, UpstreamError};

/// Largest upstream error body read (for classification only; HTML error pages can be big).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest non-streaming upstream response accepted (embeddings of a large batch are tens of MB).
const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;

/// One request's view of the route it is dispatched on.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a> {
    pub route: &'a Arc<Route>,
    /// Indices into `route.backends`, in the order to try them.
    pub candidates: &'a [usize],
    /// End of the route's total timeout for this request.
    pub deadline: Instant,
    pub request_id: &'a str,
    pub metrics: &'a Metrics,
}

/// The result of the loop, with what the response headers and metering need to know.
#[derive(Debug)]
pub struct Attempted<T> {
    pub result: Result<T, GatewayError>,
    /// The backend that answered, or the last one tried.
    pub backend: Option<Arc<Backend>>,
    pub attempts: u32,
}

/// A successful chat attempt.
#[derive(Debug)]
pub enum ChatAnswer {
    Complete(Box<ChatCompletion>),
    Stream(Box<OpenStream>),
}

/// A streaming response whose first items have arrived (and were not an error).
#[derive(Debug)]
pub struct OpenStream {
    pub body: Incoming,
    pub translator: StreamTranslator,
    /// Items already translated while waiting for the first one.
    pub buffered: Vec<StreamItem>,
}

impl Dispatch<'_> {
    /// Runs `attempt` against the candidates until one succeeds or the policy says stop.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Attempted<T>
    where
        F: FnMut(Arc<Backend>) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let route = self.route;
        let policy = &route.retry;
        let max_attempts = policy.attempts.max(1);
        let mut last: Option<(Arc<Backend>, GatewayError)> = None;
        let mut attempts = 0;
        while attempts < max_attempts && !self.candidates.is_empty() {
            let position = attempts as usize % self.candidates.len();
            let backend = route.backends[self.candidates[position]].clone();
            let round = attempts / self.candidates.len() as u32;
            if round > 0 {
                let retry_after = match &last {
                    Some((_, GatewayError::Upstream(error))) => error.retry_after,
                    _ => None,
                };
                let Some(delay) = backoff(policy, round - 1, retry_after, rand::random::<f64>())
                else {
                    break;
                };
                if Instant::now() + delay >= self.deadline {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            attempts += 1;
            let started = Instant::now();
            let outcome =
                match tokio::time::timeout_at(self.deadline, attempt(backend.clone())).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(GatewayError::TotalTimeout(route.timeouts.total)),
                };
            match outcome {
                Ok(value) => {
                    self.metrics.record_attempt(&backend.metrics, Ok(()));
                    backend.state.latency.observe(started.elapsed());
                    return Attempted {
                        result: Ok(value),
                        backend: Some(backend),
                        attempts,
                    };
                }
                Err(error) => {
                    self.metrics
                        .record_attempt(&backend.metrics, Err(error.metric_label()));
                    self.log_failure(&backend, &error, attempts);
                    let retry = should_retry(policy, &error)
                        && !matches!(error, GatewayError::TotalTimeout(_));
                    last = Some((backend, error));
                    if !retry {
                        break;
                    }
                }
            }
        }
        match last {
            Some((backend, error)) => Attempted {
                result: Err(error),
                backend: Some(backend),
                attempts,
            },
            None => Attempted {
                result: Err(GatewayError::NoEligibleBackend {
                    route: route.id.to_string(),
                    reason: "no candidate backend",
                }),
                backend: None,
                attempts,
            },
        }
    }

    fn log_failure(&self, backend: &Backend, error: &GatewayError, attempt: u32) {
        tracing::warn!(
            request_id = self.request_id,
            route = %self.route.id,
            backend = %backend.name,
            provider = backend.provider.as_str(),
            attempt,
            class = error.metric_label(),
            error = %error,
            "upstream attempt failed"
        );
        if let GatewayError::Upstream(upstream) = error {
            // The provider's own words may quote the request: debug level only.
            tracing::debug!(
                request_id = self.request_id,
                status = upstream.status,
                code = upstream.provider_code.as_deref(),
                provider_message = upstream.provider_message(),
                "upstream error detail"
            );
        }
    }

    /// Dispatches a chat request (streaming when `request.stream` is set).
    pub async fn chat(&self, request: &ChatRequest) -> Attempted<ChatAnswer> {
        let timeouts = self.route.timeouts;
        self.run(|backend| async move {
            let upstream_request = providers::build_chat_request(&backend.target, request)?;
            let started = Instant::now();
            let response = backend
                .client
                .send(upstream_request, timeouts.first_byte)
                .await?;
            let (parts, body) = response.into_parts();
            if !parts.status.is_success() {
                return Err(upstream_error(&backend, parts, body, timeouts.idle).await);
            }
            if request.is_stream() {
                let first_item_by = started + timeouts.first_byte;
                open_stream(&backend, body, first_item_by, timeouts.first_byte)
                    .await
                    .map(|stream| ChatAnswer::Stream(Box::new(stream)))
            } else {
                let bytes = read_body(body, MAX_RESPONSE_BODY, timeouts.idle).await?;
                let completion = providers::parse_chat_response(
                    backend.provider,
                    &bytes,
                    providers::unix_now(),
                )?;
                Ok(ChatAnswer::Complete(Box::new(completion)))
            }
        })
        .await
    }

    /// Dispatches an embeddings request.
    pub async fn embeddings(&self, request: &EmbeddingsRequest) -> Attempted<EmbeddingsOutcome> {
        let timeouts = self.route.timeouts;
        self.run(|backend| async move {
            let upstream_request = providers::build_embeddings_request(&backend.target, request)?;
            let response = backend
                .client
                .send(upstream_request, timeouts.first_byte)
                .await?;
            let (parts, body) = response.into_parts();
            if !parts.status.is_success() {
                return Err(upstream_error(&backend, parts, body, timeouts.idle).await);
            }
            let bytes = read_body(body, MAX_RESPONSE_BODY, timeouts.idle).await?;
            Ok(providers::parse_embeddings_response(
                backend.provider,
                request,
                bytes,
            )?)
        })
        .await
    }
}

/// Reads a non-2xx response and classifies it.
async fn upstream_error(
    backend: &Backend,
    parts: http::response::Parts,
    body: Incoming,
    idle: Duration,
) -> GatewayError {
    let bytes = read_body(body, MAX_ERROR_BODY, idle)
        .await
        .unwrap_or_default();
    GatewayError::Upstream(providers::parse_error_response(
        backend.provider,
        parts.status.as_u16(),
        &parts.headers,
        &bytes,
    ))
}

/// Reads the stream until its first translated item. An error item (or a stream that ends before any
/// item) fails the attempt while nothing has reached the client.
async fn open_stream(
    backend: &Backend,
    mut body: Incoming,
    deadline: Instant,
    first_byte: Duration,
) -> Result<OpenStream, GatewayError> {
    let mut translator = StreamTranslator::new(backend.provider, providers::unix_now());
    let mut items = Vec::new();
    while items.is_empty() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(TransportError::FirstByteTimeout(first_byte).into()),
            Ok(None) => {
                translator.finish(&mut items);
                break;
            }
            Ok(Some(Err(error))) => return Err(TransportError::Io(error.to_string()).into()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    translator.feed(&data, &mut items);
                }
            }
        }
    }
    if let Some(error) = items.iter().find_map(|item| match item {
        StreamItem::Error(error) => Some(error.clone()),
        StreamItem::Chunk(_) => None,
    }) {
        return Err(error.into());
    }
    if items.is_empty() {
        return Err(UpstreamError::protocol(200, "the stream ended without any event").into());
    }
    Ok(OpenStream {
        body,
        translator,
        buffered: items,
    })
}

/// Collects a body of at most `limit` bytes, failing if it stalls for longer than `idle`.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, GatewayError> {
    let mut collected = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(TransportError::IdleTimeout(idle).into()),
            Ok(None) => return Ok(collected.freeze()),
            Ok(Some(Err(error))) => return Err(TransportError::Io(error.to_string()).into()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > limit {
                        return Err(UpstreamError::protocol(
                            200,
                            format!("response body larger than {limit} bytes"),
                        )
                        .into());
                    }
                    collected.extend_from_slice(&data);
                }
            }
        }
    }
}
