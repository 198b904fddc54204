//! The request pipeline. Every request passes these layers, outermost first; each says what it adds to
//! the request's [`Exchange`] (its context) or what it reads.
//!
//! 1. **Request id** — `x-request-id` from the client when sane, else a fresh one; echoed on every
//!    response, on every log line of the request.
//! 2. **Exchange** — in-flight gauge, start time; ends with exactly one metrics update, one
//!    [`Meter::settle`] (when admitted) and one access-log line (`sluice::access`), also for streams
//!    the client abandons.
//! 3. **Endpoint** — method and path → handler: `POST /v1/chat/completions`, `POST /v1/embeddings`,
//!    `GET /v1/models`, `POST /v1/messages` (Anthropic surface: Anthropic-shaped errors). Unknown path
//!    404, wrong method 405.
//! 4. **Configuration** — the served [`RuntimeConfig`] is taken once; the request keeps that `Arc` to its
//!    end, so a reload never changes a request in flight. 503 before the first configuration.
//! 5. **Declared size** — a `Content-Length` above `--max-body-bytes` is 413 before anything is read.
//! 6. **Auth** — the virtual key (`Authorization: Bearer` or `x-api-key`) → [`Key`]; 401 says why (missing,
//!    unknown, expired, disabled, rotated out). Before the body is read, so unauthenticated callers cost
//!    nothing and learn nothing about request validation.
//! 7. **Body** — read up to the limit (413 for chunked bodies too), parsed strictly (400 naming the field).
//! 8. **Route** — `model` → route by name or alias (404 `model_not_found`); the key's scope (403
//!    `model_not_allowed`: the caller is authenticated, so naming the problem beats hiding the model).
//! 9. **Parameters** — the route's defaults, overrides and system prompt prefix (chat only).
//! 10. **Candidates** — strategy and region rules (route ∩ key) → ordered backends; 503 if none may serve.
//! 11. **Admission** — [`Meter::admit`]: the seam for rate limits and budget reservations.
//! 12. **Dispatch** — the attempt loop ([`crate::upstream::dispatch`]): translate, send, classify, fall back.
//! 13. **Response** — translated to the client's surface; streams are relayed frame by frame.
//! 14. **Debug headers** — with `x-sluice-debug: 1`: `x-sluice-route`, `x-sluice-backend`,
//!     `x-sluice-attempts`, `x-sluice-cache`.
//!
//! The layers are straight-line code rather than a tower stack: each needs what the previous one produced
//! (the snapshot, the key, the route), and one function that reads top to bottom keeps that visible and
//! costs no boxing per layer. Endpoint-specific layers (7–13) live in [`crate::handlers`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tracing::Instrument as _;

use crate::api::openai::Usage;
use crate::auth::{Key, presented_key};
use crate::body::{self, ResponseBody};
use crate::config::{Backend, ConfigStore, Route, RuntimeConfig};
use crate::error::{GatewayError, KeyRejection, Surface};
use crate::handlers;
use crate::metering::{Meter, UsageRecord, cost_usd, token_counts};
use crate::metrics::{InFlight, Metrics};
use crate::telemetry;

/// Request/response header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Request header that turns on the decision headers.
pub const DEBUG: HeaderName = HeaderName::from_static("x-sluice-debug");
/// Route id that served the request.
pub const DEBUG_ROUTE: HeaderName = HeaderName::from_static("x-sluice-route");
/// Backend name that answered (or was tried last).
pub const DEBUG_BACKEND: HeaderName = HeaderName::from_static("x-sluice-backend");
/// Upstream attempts made.
pub const DEBUG_ATTEMPTS: HeaderName = HeaderName::from_static("x-sluice-attempts");
/// Cache status: `hit`, `miss` or `bypass` on routes with a response cache (always sent there); `off`
/// elsewhere (with `x-sluice-debug: 1` only).
pub const DEBUG_CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");

/// Default `--max-body-bytes`: room for a long conversation with a few inline images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub max_body_bytes: usize,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Shared state of the pipeline.
#[derive(Debug)]
pub struct App {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub meter: Arc<dyn Meter>,
    pub settings: AppSettings,
    /// Response caches of the routes that have a cache policy (in memory, or one shared Redis).
    pub caches: Arc<crate::cache::RouteCaches>,
}

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Models,
    Messages,
}

impl Endpoint {
    pub(crate) fn resolve(path: &str) -> Option<(Self, Method)> {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" => Some((Endpoint::ChatCompletions, Method::POST)),
            "/v1/embeddings" => Some((Endpoint::Embeddings, Method::POST)),
            "/v1/models" => Some((Endpoint::Models, Method::GET)),
            "/v1/messages" => Some((Endpoint::Messages, Method::POST)),
            _ => None,
        }
    }
}

impl App {
    /// Runs one request through the pipeline.
    ///
    /// The request runs in a `request` span (`request_id`, then `model`, `route`, `backend`, `provider` as
    /// they become known), so every event it logs carries them and a tracing exporter sees one span per
    /// request.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = telemetry::request_id(request.headers().get(REQUEST_ID));
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or(""),
            model = tracing::field::Empty,
            route = tracing::field::Empty,
            backend = tracing::field::Empty,
            provider = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        let endpoint = Endpoint::resolve(request.uri().path()).map(|(endpoint, _)| endpoint);
        telemetry::genai::request_started(&span, request.method(), endpoint, request.headers());
        self.handle_in_span(request, request_id)
            .instrument(span)
            .await
    }

    async fn handle_in_span<B>(
        self: Arc<Self>,
        request: Request<B>,
        request_id: HeaderValue,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_owned();
        let surface = if path.starts_with("/v1/messages") {
            Surface::Anthropic
        } else {
            Surface::OpenAi
        };
        let debug = request
            .headers()
            .get(DEBUG)
            .is_some_and(|v| v == "1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
        let mut exchange = Exchange {
            _in_flight: self.metrics.in_flight(),
            app: self.clone(),
            request_id,
            start: Instant::now(),
            surface,
            method: request.method().clone(),
            path,
            debug,
            key: None,
            route: None,
            backend: None,
            attempts: 0,
            admitted: false,
            streamed: false,
            admission: Default::default(),
            output_text: String::new(),
            cache: None,
            span: telemetry::genai::request_span(),
        };
        let Some((endpoint, method)) = Endpoint::resolve(&exchange.path) else {
            let error = GatewayError::UnknownEndpoint {
                method: exchange.method.to_string(),
                path: exchange.path.clone(),
            };
            return exchange.fail(error);
        };
        if exchange.method != method {
            let error = GatewayError::MethodNotAllowed {
                method: exchange.method.to_string(),
                path: exchange.path.clone(),
            };
            let mut response = exchange.fail(error);
            if let Ok(allow) = HeaderValue::from_str(method.as_str()) {
                response.headers_mut().insert(http::header::ALLOW, allow);
            }
            return response;
        }
        let Some(config) = self.store.current() else {
            return exchange.fail(GatewayError::ConfigNotLoaded);
        };
        if endpoint != Endpoint::Models
            && let Err(error) =
                body::check_declared_length(request.headers(), self.settings.max_body_bytes)
        {
            return exchange.fail(error);
        }
        let key = match presented_key(request.headers()) {
            None => Err(KeyRejection::Missing),
            Some(presented) => config.keys.authenticate(presented, chrono::Utc::now()),
        };
        match key {
            Ok(key) => exchange.key = Some(key),
            Err(rejection) => return exchange.fail(GatewayError::Unauthorized(rejection)),
        }
        let (parts, body) = request.into_parts();
        if endpoint == Endpoint::Models {
            return handlers::models::list(exchange, &config, &parts.headers);
        }
        let bytes = match body::read_limited(body, self.settings.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(error) => return exchange.fail(error),
        };
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => {
                handlers::chat::handle(exchange, config, bytes, &parts.headers).await
            }
            Endpoint::Embeddings => handlers::embeddings::handle(exchange, config, bytes).await,
            Endpoint::Models => unreachable_models(exchange),
        }
    }
}

/// `GET /v1/models` returned above; kept total without a panic.
fn unreachable_models(exchange: Exchange) -> Response<ResponseBody> {
    exchange.fail(GatewayError::Internal(
        "models endpoint reached the body stage".into(),
    ))
}

/// Layer 8: the route for `model`, checked against the key's scope.
pub(crate) fn resolve_route(
    config: &RuntimeConfig,
    key: &Key,
    model: &str,
) -> Result<Arc<Route>, GatewayError> {
    let span = tracing::Span::current();
    span.record("model", model);
    telemetry::genai::request_model(&span, model);
    let route = config
        .route(model)
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: model.to_owned(),
        })?;
    span.record("route", &*route.id);
    if !key.may_use(&route.id) {
        return Err(GatewayError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }
    Ok(route.clone())
}

/// Layer 10: the candidates in the order to try them.
pub(crate) fn candidates(
    route: &Route,
    key: &Key,
    sticky_subject: Option<&str>,
) -> Result<Vec<usize>, GatewayError> {
    let views: Vec<crate::routing::BackendView<'_>> = route
        .backends
        .iter()
        .map(|backend| crate::routing::BackendView {
            priority: backend.priority,
            weight: backend.weight,
            region: backend.region.as_deref(),
            latency: backend.state.latency.get(),
            price: backend.blended_price,
        })
        .collect();
    let selection = crate::routing::Selection {
        strategy: route.strategy,
        backends: &views,
        route_regions: &route.allowed_regions,
        key_regions: &key.config.allowed_regions,
    };
    let order = match sticky_subject {
        // A sticky split: the subject's backend first (same subject, same backend), the others as fallbacks.
        Some(subject) => {
            let names: Vec<&str> = route.backends.iter().map(|b| &*b.name).collect();
            crate::routing::sticky_order(&selection, &names, &route.id, subject)
        }
        None => crate::routing::order_candidates(&selection, &route.state.weighted),
    };
    if order.is_empty() {
        return Err(GatewayError::NoEligibleBackend {
            route: route.id.to_string(),
            reason: "no backend of the route runs in a region both the route and the key allow",
        });
    }
    Ok(order)
}

/// One request's context, from the first byte to the last (streams included). Ending it records metrics,
/// settles metering and writes the access-log line, exactly once.
#[derive(Debug)]
pub struct Exchange {
    pub app: Arc<App>,
    pub request_id: HeaderValue,
    pub start: Instant,
    pub surface: Surface,
    pub method: Method,
    pub path: String,
    pub debug: bool,
    pub key: Option<Arc<Key>>,
    pub route: Option<Arc<Route>>,
    pub backend: Option<Arc<Backend>>,
    pub attempts: u32,
    /// [`Meter::admit`] accepted the request, so [`Meter::settle`] is owed.
    pub admitted: bool,
    pub streamed: bool,
    /// What [`Meter::admit`] reserved, and the `x-ratelimit-*` headers every response carries.
    pub admission: crate::metering::Admitted,
    /// Text sent to the client, kept for a token estimate when the provider reports no usage.
    pub output_text: String,
    /// Outcome of the response cache, on routes that have one (`x-sluice-cache`).
    pub cache: Option<crate::cache::CacheStatus>,
    /// The `request` span (traces on), kept to its end: a stream's span closes when the relay ends.
    pub span: tracing::Span,
    /// Holds the in-flight gauge up until the exchange ends.
    _in_flight: InFlight,
}

impl Exchange {
    /// Notes the backend that answered (or was tried last) after dispatch, also on the request span.
    pub fn set_dispatched(&mut self, backend: Option<Arc<Backend>>, attempts: u32) {
        if let Some(backend) = &backend {
            let span = tracing::Span::current();
            span.record("backend", &*backend.name);
            span.record("provider", backend.provider.as_str());
        }
        self.backend = backend;
        self.attempts = attempts;
    }

    /// Layer 11 passed: settlement is owed, and the responses carry the admission's headers.
    pub fn admit(&mut self, admitted: crate::metering::Admitted) {
        self.admission = admitted;
        self.admitted = true;
    }

    /// The request id as text (always ASCII).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    /// Adds the request id and, when asked for, the decision headers.
    pub fn decorate(&self, response: &mut Response<ResponseBody>) {
        self.decorate_headers(response.headers_mut());
    }

    /// [`Exchange::decorate`] on a header map (for streams, whose exchange moves into the relay).
    pub fn decorate_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(REQUEST_ID, self.request_id.clone());
        headers.extend(self.admission.headers.clone());
        if let Some(status) = self.cache {
            headers.insert(DEBUG_CACHE, HeaderValue::from_static(status.as_str()));
        }
        if !self.debug {
            return;
        }
        let value = |text: &str| {
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
        };
        if let Some(route) = &self.route {
            headers.insert(DEBUG_ROUTE, value(&route.id));
        }
        if let Some(backend) = &self.backend {
            headers.insert(DEBUG_BACKEND, value(&backend.name));
        }
        headers.insert(DEBUG_ATTEMPTS, HeaderValue::from(self.attempts));
        if self.cache.is_none() {
            headers.insert(DEBUG_CACHE, HeaderValue::from_static("off"));
        }
    }

    /// Ends the request with an error response in the surface's shape.
    pub fn fail(self, error: GatewayError) -> Response<ResponseBody> {
        let status = error.status(self.surface);
        let mut response = body::json(status, error.body(self.surface));
        if let Some(after) = error.retry_after() {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(headers) = error.headers() {
            response.headers_mut().extend(headers.clone());
        }
        self.decorate(&mut response);
        self.app.metrics.record_error(&error);
        if error.origin() != crate::error::Origin::Client {
            tracing::warn!(request_id = self.request_id(), class = error.metric_label(), error = %error, "request failed");
        }
        self.finish(status.as_u16(), None, false, Some(error.metric_label()));
        response
    }

    /// Records the end of the request: metrics, usage and cost, settlement, access log.
    pub fn finish(
        self,
        status: u16,
        usage: Option<&Usage>,
        complete: bool,
        failure: Option<&'static str>,
    ) {
        let elapsed = self.start.elapsed();
        let metrics = &self.app.metrics;
        let key_id = self.key.as_ref().map(|key| &key.id);
        let backend_metrics = self.backend.as_ref().map(|backend| &backend.metrics);
        metrics.record_request(backend_metrics, key_id, status, elapsed);
        let tokens = usage.map(token_counts);
        let cost = match (&self.backend, &tokens) {
            (Some(backend), Some(tokens)) => backend
                .config
                .pricing
                .as_ref()
                .map(|pricing| cost_usd(pricing, tokens)),
            _ => None,
        };
        // A cache hit consumed nothing upstream; what it would have cost is counted as saved instead.
        let cache_hit = self.cache == Some(crate::cache::CacheStatus::Hit);
        if let (Some(backend), Some(tokens), false) = (&self.backend, &tokens, cache_hit) {
            metrics.record_usage(&backend.metrics, key_id, tokens, cost);
        }
        telemetry::genai::request_finished(&self, status, usage, cost, failure);
        if self.admitted
            && let (Some(key), Some(route)) = (&self.key, &self.route)
        {
            self.app.meter.settle(&UsageRecord {
                request_id: self.request_id(),
                key,
                route,
                backend: self.backend.as_ref(),
                usage,
                cost_usd: cost,
                status,
                streamed: self.streamed,
                complete,
                attempts: self.attempts,
                duration: elapsed,
                reservation: &self.admission.reservation,
                output_text: &self.output_text,
                cache_hit,
            });
        }
        tracing::info!(
            target: "sluice::access",
            request_id = self.request_id(),
            method = %self.method,
            path = %self.path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            key = key_id.map(|id| &**id),
            route = self.route.as_ref().map(|r| &*r.id),
            backend = self.backend.as_ref().map(|b| &*b.name),
            provider = self.backend.as_ref().map(|b| b.provider.as_str()),
            attempts = self.attempts,
            streamed = self.streamed,
            complete,
            input_tokens = tokens.map(|t| t.input),
            output_tokens = tokens.map(|t| t.output),
            failure,
            "request"
        );
    }
}

/// A successful full response.
pub(crate) fn ok_json(exchange: &Exchange, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = body::json(StatusCode::OK, body);
    exchange.decorate(&mut response);
    response
}
