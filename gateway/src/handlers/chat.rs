//! `POST /v1/chat/completions` and `POST /v1/messages`: both surfaces share the canonical request, the
//! attempt loop and the stream relay; only decoding and encoding differ.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;

use crate::api::encode::{self, AnthropicSseEncoder, OpenAiSseEncoder};
use crate::api::openai::ChatRequest;
use crate::api::{anthropic_bridge, parse_chat_request, parse_messages_request};
use crate::app::{Exchange, candidates, ok_json, resolve_route};
use crate::body::{self, ResponseBody};
use crate::config::{Route, RuntimeConfig};
use crate::error::{GatewayError, Surface};
use crate::metering::Admission;
use crate::routing::apply_route_parameters;
use crate::upstream::dispatch::{ChatAnswer, Dispatch};
use crate::upstream::stream::{SseEncoder, StreamEnd, StreamObserver, relay};

/// A request that passed every check before dispatch.
struct Prepared {
    request: ChatRequest,
    route: Arc<Route>,
    candidates: Vec<usize>,
}

/// Layers 7–11: decode, route, scope, parameters, candidates, admission.
fn prepare(
    exchange: &mut Exchange,
    config: &RuntimeConfig,
    bytes: &[u8],
) -> Result<Prepared, GatewayError> {
    let mut request = match exchange.surface {
        Surface::OpenAi => parse_chat_request(bytes)?,
        Surface::Anthropic => {
            anthropic_bridge::request_to_canonical(parse_messages_request(bytes)?)?
        }
    };
    let key = exchange
        .key
        .clone()
        .ok_or(GatewayError::Internal("chat handler without a key".into()))?;
    let route = resolve_route(config, &key, &request.model)?;
    exchange.route = Some(route.clone());
    apply_route_parameters(
        &mut request,
        &route.defaults,
        &route.overrides,
        route.system_prompt_prefix.as_deref(),
    );
    let candidates = candidates(&route, &key)?;
    exchange.app.meter.admit(&Admission {
        request_id: exchange.request_id(),
        key: &key,
        route: &route,
        max_output_tokens: request.max_output_tokens(),
        streaming: request.is_stream(),
    })?;
    exchange.admitted = true;
    Ok(Prepared {
        request,
        route,
        candidates,
    })
}

/// Serves one chat request on the exchange's surface.
pub async fn handle(
    mut exchange: Exchange,
    config: Arc<RuntimeConfig>,
    bytes: Bytes,
) -> Response<ResponseBody> {
    let prepared = match prepare(&mut exchange, &config, &bytes) {
        Ok(prepared) => prepared,
        Err(error) => return exchange.fail(error),
    };
    drop(bytes);
    let app = exchange.app.clone();
    let route = prepared.route;
    let deadline = tokio::time::Instant::now() + route.timeouts.total;
    let attempted = Dispatch {
        route: &route,
        candidates: &prepared.candidates,
        deadline,
        request_id: exchange.request_id(),
        metrics: &app.metrics,
    }
    .chat(&prepared.request)
    .await;
    exchange.set_dispatched(attempted.backend, attempted.attempts);
    match attempted.result {
        Err(error) => exchange.fail(error),
        Ok(ChatAnswer::Complete(completion)) => {
            let usage = completion.usage.clone();
            let body = match exchange.surface {
                Surface::OpenAi => encode::openai_response(&completion),
                Surface::Anthropic => encode::anthropic_response(*completion),
            };
            let response = ok_json(&exchange, body);
            exchange.finish(200, usage.as_ref(), true, None);
            response
        }
        Ok(ChatAnswer::Stream(stream)) => {
            exchange.streamed = true;
            let encoder = match exchange.surface {
                Surface::OpenAi => {
                    SseEncoder::OpenAi(OpenAiSseEncoder::new(prepared.request.wants_stream_usage()))
                }
                Surface::Anthropic => SseEncoder::Anthropic(AnthropicSseEncoder::new()),
            };
            let mut headers = http::HeaderMap::new();
            exchange.decorate_headers(&mut headers);
            let frames = relay(
                stream,
                encoder,
                route.timeouts.idle,
                deadline,
                Box::new(StreamLog { exchange }),
            );
            let mut response = body::event_stream(frames);
            response.headers_mut().extend(headers);
            response
        }
    }
}

/// Ends a streamed exchange when its relay ends.
struct StreamLog {
    exchange: Exchange,
}

impl StreamObserver for StreamLog {
    fn first_output(&mut self) {
        if let Some(backend) = &self.exchange.backend {
            self.exchange
                .app
                .metrics
                .record_first_token(&backend.metrics, self.exchange.start.elapsed());
        }
    }

    fn finished(self: Box<Self>, end: StreamEnd<'_>) {
        if let Some(failure) = end.failure {
            let origin = if failure == "client_disconnect" {
                crate::error::Origin::Client
            } else {
                crate::error::Origin::Upstream
            };
            self.exchange
                .app
                .metrics
                .record_error_class(failure, origin);
        }
        self.exchange
            .finish(200, end.usage, end.complete, end.failure);
    }
}
