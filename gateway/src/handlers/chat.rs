//! `POST /v1/chat/completions` and `POST /v1/messages`: both surfaces share the canonical request, the
//! attempt loop and the stream relay; only decoding and encoding differ.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response};
use hyper::body::Frame;
use sluice_crds::v1alpha1::{RoutingStrategy, StickyBy};

use crate::api::encode::{self, AnthropicSseEncoder, OpenAiSseEncoder};
use crate::api::openai::{ChatCompletion, ChatRequest};
use crate::api::{anthropic_bridge, parse_chat_request, parse_messages_request};
use crate::app::{Exchange, candidates, ok_json, resolve_route};
use crate::auth::Key;
use crate::body::{self, ResponseBody};
use crate::cache::{CacheStatus, CachedResponse, RequestCache, StreamAssembler, replay_chunks};
use crate::config::{Route, RuntimeConfig};
use crate::error::{GatewayError, Origin, Surface};
use crate::guardrails::{PolicyError, model_denied, pii_mode_label};
use crate::metering::{Admission, Prompt};
use crate::pii::{ChunkRedactor, Redactor};
use crate::policy_metrics::{Direction, PolicyMetrics};
use crate::providers::StreamItem;
use crate::routing::{apply_route_parameters, region_allowed};
use crate::upstream::dispatch::{ChatAnswer, Dispatch};
use crate::upstream::stream::{SseEncoder, StreamEnd, StreamObserver, relay};

/// A request that passed every check before dispatch.
struct Prepared {
    request: ChatRequest,
    route: Arc<Route>,
    key: Arc<Key>,
    candidates: Vec<usize>,
}

/// Layers 7–11: decode, route, scope (allow and deny lists), parameters, guardrails and PII, candidates
/// (sticky when the route says so), admission.
fn prepare(
    exchange: &mut Exchange,
    config: &RuntimeConfig,
    bytes: &[u8],
    headers: &HeaderMap,
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
    if model_denied(&key.config, &route.config, &request.model) {
        return Err(GatewayError::ModelNotAllowed {
            model: request.model.clone(),
        });
    }
    apply_route_parameters(
        &mut request,
        &route.defaults,
        &route.overrides,
        route.system_prompt_prefix.as_deref(),
    );
    enforce_policy(&exchange.app.metrics.policy, &route, &key, &mut request)?;
    let subject = sticky_subject(&route, &key, headers);
    let candidates = candidates(&route, &key, subject.as_deref())?;
    let admitted = exchange.app.meter.admit(&Admission {
        request_id: exchange.request_id(),
        key: &key,
        route: &route,
        budgets: &config.budgets,
        prompt: Prompt::Chat(&request),
        max_output_tokens: request.max_output_tokens(),
        streaming: request.is_stream(),
    })?;
    exchange.admit(admitted);
    Ok(Prepared {
        request,
        route,
        key,
        candidates,
    })
}

/// Guardrails, then PII (masked in place in `redact` mode); findings are counted either way.
fn enforce_policy(
    metrics: &PolicyMetrics,
    route: &Route,
    key: &Key,
    request: &mut ChatRequest,
) -> Result<(), GatewayError> {
    let mode = route.policy.redactor.as_ref().map(Redactor::mode);
    match route.policy.enforce(&key.config, request) {
        Ok(tally) => {
            if let Some(mode) = mode {
                metrics.record_pii(&route.id, Direction::Request, pii_mode_label(mode), &tally);
            }
            Ok(())
        }
        Err(PolicyError::Pii(blocked)) => {
            metrics.record_pii(&route.id, Direction::Request, "block", blocked.tally());
            Err(PolicyError::Pii(blocked).into())
        }
        Err(error) => Err(error.into()),
    }
}

/// Who a sticky route assigns: the configured header's value, else the key.
fn sticky_subject(route: &Route, key: &Key, headers: &HeaderMap) -> Option<String> {
    let sticky = route.config.stickiness.as_ref()?;
    if route.strategy != RoutingStrategy::Weighted {
        return None;
    }
    let from_header = match (sticky.by, &sticky.header) {
        (StickyBy::Header, Some(name)) => headers
            .get(name.as_str())
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(|value| format!("header:{value}")),
        _ => None,
    };
    Some(from_header.unwrap_or_else(|| format!("key:{}", key.id)))
}

/// A failure to reach any backend of a region-restricted route, when backends outside the allowed
/// regions were held back, becomes a residency refusal that says so (503); anything else is unchanged.
fn residency_failure(error: GatewayError, route: &Route, key: &Key) -> GatewayError {
    let (route_regions, key_regions) = (&route.allowed_regions, &key.config.allowed_regions);
    let held_back = route
        .backends
        .iter()
        .any(|b| !region_allowed(b.region.as_deref(), route_regions, key_regions));
    if !held_back || error.origin() != Origin::Upstream {
        return error;
    }
    let regions: Vec<String> = match (route_regions.is_empty(), key_regions.is_empty()) {
        (false, false) => route_regions
            .iter()
            .filter(|r| key_regions.contains(r))
            .cloned()
            .collect(),
        (false, true) => route_regions.clone(),
        _ => key_regions.clone(),
    };
    PolicyError::RegionUnavailable {
        route: route.id.to_string(),
        regions,
        cause: error.metric_label(),
    }
    .into()
}

/// Serves one chat request on the exchange's surface.
pub async fn handle(
    mut exchange: Exchange,
    config: Arc<RuntimeConfig>,
    bytes: Bytes,
    headers: &HeaderMap,
) -> Response<ResponseBody> {
    let prepared = match prepare(&mut exchange, &config, &bytes, headers) {
        Ok(prepared) => prepared,
        Err(error) => return exchange.fail(error),
    };
    drop(bytes);
    let app = exchange.app.clone();
    let route = prepared.route;
    let mut cache = RequestCache::new(
        &app.caches,
        &route,
        &prepared.key.id,
        headers,
        &prepared.request,
        &app.metrics.policy,
    );
    if let Some(cache) = &mut cache {
        match cache.lookup().await {
            Ok(hit) => return serve_hit(exchange, &route, &prepared.request, &hit),
            Err(status) => exchange.cache = Some(status),
        }
        let semantic_hit = crate::semantic::attach(
            cache,
            &app.caches,
            &config,
            &route,
            &prepared.key,
            &prepared.request,
            &app.metrics,
            exchange.request_id(),
        )
        .await;
        if let Some(hit) = semantic_hit {
            return serve_hit(exchange, &route, &prepared.request, &hit);
        }
    }
    crate::shadow::mirror(
        &route,
        &prepared.key.config.allowed_regions,
        &prepared.request,
        &app.metrics.policy,
    );
    let deadline = tokio::time::Instant::now() + route.timeouts.total;
    let response_redactor = route
        .policy
        .redactor
        .as_ref()
        .filter(|redactor| redactor.covers_responses());
    // The upstream's bytes can go to the client unchanged when nothing reads or rewrites the answer.
    let pass_through =
        exchange.surface == Surface::OpenAi && response_redactor.is_none() && cache.is_none();
    let attempted = Dispatch {
        route: &route,
        candidates: &prepared.candidates,
        deadline,
        request_id: exchange.request_id(),
        metrics: &app.metrics,
    }
    .chat(&prepared.request, pass_through)
    .await;
    exchange.set_dispatched(attempted.backend, attempted.attempts);
    crate::telemetry::genai::chat_answer(&exchange.span, &attempted.result);
    match attempted.result {
        Err(error) => exchange.fail(residency_failure(error, &route, &prepared.key)),
        Ok(ChatAnswer::PassThrough(raw)) => {
            let response = ok_json(&exchange, raw.body);
            exchange.finish(200, Some(&raw.usage), true, None);
            response
        }
        Ok(ChatAnswer::Complete(mut completion)) => {
            if let Some(redactor) = response_redactor {
                let tally = redactor.inspect_response(&mut completion);
                app.metrics.policy.record_pii(
                    &route.id,
                    Direction::Response,
                    pii_mode_label(redactor.mode()),
                    &tally,
                );
            }
            let usage = completion.usage.clone();
            if usage.is_none() {
                exchange.output_text = crate::metering::tokens::completion_text(&completion);
            }
            if let (Some(cache), Some(backend)) = (cache, &exchange.backend) {
                cache.store((*completion).clone(), &backend.name).await;
            }
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
            let encoder = sse_encoder(exchange.surface, &prepared.request);
            let mut headers = http::HeaderMap::new();
            exchange.decorate_headers(&mut headers);
            let observer = StreamLog {
                redactor: response_redactor.and_then(ChunkRedactor::for_responses),
                cache: cache
                    .filter(RequestCache::writes)
                    .map(|cache| (cache, StreamAssembler::new())),
                exchange,
            };
            let frames = relay(
                stream,
                encoder,
                route.timeouts.idle,
                deadline,
                Box::new(observer),
            );
            let mut response = body::event_stream(frames);
            response.headers_mut().extend(headers);
            response
        }
    }
}

fn sse_encoder(surface: Surface, request: &ChatRequest) -> SseEncoder {
    match surface {
        Surface::OpenAi => SseEncoder::OpenAi(OpenAiSseEncoder::new(request.wants_stream_usage())),
        Surface::Anthropic => SseEncoder::Anthropic(AnthropicSseEncoder::new()),
    }
}

/// Answers from the cache: as JSON, or replayed as a stream on the client's surface. Nothing went
/// upstream, so the request settles as a hit (not billed) and what it would have cost counts as saved.
fn serve_hit(
    mut exchange: Exchange,
    route: &Route,
    request: &ChatRequest,
    hit: &CachedResponse,
) -> Response<ResponseBody> {
    exchange.cache = Some(CacheStatus::Hit);
    exchange.backend = route
        .backends
        .iter()
        .find(|backend| *backend.name == hit.backend)
        .cloned();
    let usage = hit.completion.usage.clone();
    if let Some(usage) = &usage {
        let tokens = crate::metering::token_counts(usage);
        let cost = exchange
            .backend
            .as_ref()
            .and_then(|backend| backend.config.pricing.as_ref())
            .map(|pricing| crate::metering::cost_usd(pricing, &tokens));
        exchange.app.metrics.policy.record_saved(
            &route.id,
            tokens.input.saturating_add(tokens.output),
            cost,
        );
    }
    let response = if request.is_stream() {
        exchange.streamed = true;
        let frames = replay_stream(sse_encoder(exchange.surface, request), &hit.completion);
        let mut response = body::event_stream(futures::stream::once(async move {
            Ok(Frame::data(Bytes::from(frames)))
        }));
        exchange.decorate(&mut response);
        response
    } else {
        let body = match exchange.surface {
            Surface::OpenAi => encode::openai_response(&hit.completion),
            Surface::Anthropic => encode::anthropic_response(hit.completion.clone()),
        };
        ok_json(&exchange, body)
    };
    exchange.finish(200, usage.as_ref(), true, None);
    response
}

/// The whole event stream of a stored completion, as the client's surface encodes it.
fn replay_stream(mut encoder: SseEncoder, completion: &ChatCompletion) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in replay_chunks(completion) {
        let item = StreamItem::Chunk(chunk);
        match &mut encoder {
            SseEncoder::OpenAi(encoder) => encoder.encode(&item, &mut out),
            SseEncoder::Anthropic(encoder) => encoder.encode(&item, &mut out),
        }
    }
    match &mut encoder {
        SseEncoder::OpenAi(encoder) => encoder.finish(&mut out),
        SseEncoder::Anthropic(encoder) => encoder.finish(&mut out),
    }
    out
}

/// Ends a streamed exchange when its relay ends; on the way, redacts response PII chunk by chunk and
/// assembles the answer for the cache.
struct StreamLog {
    exchange: Exchange,
    redactor: Option<ChunkRedactor>,
    /// The cache and the answer assembled so far, when the answer will be stored.
    cache: Option<(RequestCache, StreamAssembler)>,
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

    fn item(&mut self, item: &mut StreamItem) {
        let StreamItem::Chunk(chunk) = item else {
            return;
        };
        if let Some(redactor) = &mut self.redactor {
            redactor.process(chunk);
        }
        if let Some((_, assembler)) = &mut self.cache {
            assembler.push(chunk);
        }
        crate::metering::tokens::collect_output(chunk, &mut self.exchange.output_text);
    }

    fn last_item(&mut self) -> Option<StreamItem> {
        let chunk = self.redactor.as_mut()?.finish()?;
        if let Some((_, assembler)) = &mut self.cache {
            assembler.push(&chunk);
        }
        Some(StreamItem::Chunk(chunk))
    }

    fn finished(self: Box<Self>, end: StreamEnd<'_>) {
        let StreamLog {
            exchange,
            redactor,
            cache,
        } = *self;
        if let (Some(redactor), Some(route)) = (&redactor, &exchange.route)
            && let Some(policy) = route.policy.redactor.as_ref()
        {
            exchange.app.metrics.policy.record_pii(
                &route.id,
                Direction::Response,
                pii_mode_label(policy.mode()),
                redactor.tally(),
            );
        }
        if end.complete
            && let Some((cache, assembler)) = cache
            && let Some(completion) = assembler.finish()
            && let Some(backend) = &exchange.backend
        {
            let backend = backend.name.clone();
            tokio::spawn(async move { cache.store(completion, &backend).await });
        }
        if let Some(failure) = end.failure {
            let origin = if failure == "client_disconnect" {
                crate::error::Origin::Client
            } else {
                crate::error::Origin::Upstream
            };
            exchange.app.metrics.record_error_class(failure, origin);
        }
        exchange.finish(200, end.usage, end.complete, end.failure);
    }
}
