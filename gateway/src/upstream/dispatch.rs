//! The attempt loop: one request's attempts over a route's candidates, driven by the reliability
//! decisions ([`crate::reliability`]): attempt plan, circuit breaker permits, retry budget, backoff and
//! `Retry-After` per backend, hedging, context-window fallback, and the total timeout. One attempt =
//! translate → send → classify. Nothing is sent to the client until an attempt has succeeded, so any
//! failure up to that point (including an error event at the start of a 200 stream) can still move on
//! to the next backend.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sluice_crds::config::BreakerConfig;
use tokio::time::Instant;

use super::TransportError;
use crate::api::openai::{ChatCompletion, ChatRequest, EmbeddingsRequest};
use crate::config::{Backend, Route};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::providers::passthrough::RawCompletion;
use crate::providers::{self, EmbeddingsOutcome, StreamItem, StreamTranslator, UpstreamError};
use crate::reliability::{
    AttemptKind, AttemptPlan, Excluded, Failure, Next, Outcome, Permit, WindowCounts, demote,
    hedge_at, outliers, retry_hint,
};
use crate::telemetry::genai::{Operation, traced_attempt};

/// Largest upstream error body read (for classification only; HTML error pages can be big).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest non-streaming upstream response accepted (embeddings of a large batch are tens of MB).
const MAX_RESPONSE_BODY: usize = 256 * 1024 * 1024;
/// Shortest `Retry-After` sent when every breaker is open (an open breaker about to probe reads ~0).
const MIN_CIRCUIT_RETRY_AFTER: Duration = Duration::from_secs(1);

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
    /// Attempts started, hedges included.
    pub attempts: u32,
}

/// A successful chat attempt.
#[derive(Debug)]
pub enum ChatAnswer {
    Complete(Box<ChatCompletion>),
    /// An OpenAI-wire answer forwarded unchanged (only when the caller allowed it).
    PassThrough(Box<RawCompletion>),
    Stream(Box<OpenStream>),
}

/// A streaming response whose first items have arrived (and were not an error).
#[derive(Debug)]
pub struct OpenStream {
    pub body: Incoming,
    pub translator: StreamTranslator,
    /// Items already translated while waiting for the first one.
    pub buffered: Vec<StreamItem>,
    /// Where a failure after the first event is reported (the attempt already counted as a success).
    pub late_failure: LateFailure,
}

/// The breaker of the backend a stream came from, for failures found after the attempt succeeded.
#[derive(Debug, Clone)]
pub struct LateFailure {
    backend: Arc<Backend>,
    breaker: Option<BreakerConfig>,
}

impl LateFailure {
    /// Counts a stream that broke or stalled after its first event against its backend's breaker.
    pub fn report(&self) {
        if let Some(config) = &self.breaker {
            let breaker = &self.backend.reliability.breaker;
            breaker.record_late_failure(config, Instant::now());
            self.backend
                .metrics
                .reliability
                .set_circuit_state(breaker.state());
        }
    }
}

/// What the attempt loop waits for.
enum Event<T> {
    Done(usize, Instant, Result<T, GatewayError>),
    Hedge,
    Deadline,
}

/// Tags an attempt with its candidate and start; one opaque type per `Fut`, so attempts (first,
/// retries, the hedge) share a [`FuturesUnordered`].
async fn tagged<T, Fut>(candidate: usize, started: Instant, attempt: Fut) -> (usize, Instant, T)
where
    Fut: Future<Output = T>,
{
    (candidate, started, attempt.await)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<'a> Dispatch<'a> {
    /// Runs `attempt` against the candidates until one succeeds or the plan says stop (see the
    /// attempt loop in [`crate::reliability`]).
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Attempted<T>
    where
        F: FnMut(Arc<Backend>) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let route: &'a Route = self.route;
        let policy = &route.retry;
        let breaker = route.config.circuit_breaker.as_ref();
        let hedge = route.config.hedge.as_ref();
        let order = self.attempt_order(breaker);
        let backend_of =
            |candidate: usize| -> &'a Arc<Backend> { &route.backends[order[candidate]] };
        let mut plan = AttemptPlan::new(
            policy.attempts,
            order
                .iter()
                .map(|&index| route.backends[index].config.context_window),
        );
        let mut permits: Vec<Option<Permit<'a>>> = order.iter().map(|_| None).collect();
        let mut running = vec![false; order.len()];
        let mut in_flight = FuturesUnordered::new();
        // The candidate whose retry budget this request's retries draw on.
        let mut payer: Option<usize> = None;
        let mut hedge_timer: Option<Instant> = None;
        let mut hedged: Option<usize> = None;
        let mut shortest_open: Option<Duration> = None;
        let mut last: Option<(Arc<Backend>, GatewayError)> = None;
        if hedge.is_some() {
            route.reliability.hedge_budget.deposit(Instant::now());
        }
        loop {
            if in_flight.is_empty() {
                let now = Instant::now();
                let Next::Attempt {
                    candidate,
                    at,
                    kind,
                } = plan.next(now, self.deadline)
                else {
                    break;
                };
                let backend = backend_of(candidate);
                let permit = match breaker {
                    None => None,
                    Some(config) => {
                        let state = &backend.reliability.breaker;
                        let permit = state.try_acquire(config, now);
                        backend.metrics.reliability.set_circuit_state(state.state());
                        if permit.is_none() {
                            backend.metrics.reliability.count_circuit_rejection();
                            if let Some(open) = state.open_for(now) {
                                shortest_open = Some(shortest_open.map_or(open, |s| s.min(open)));
                            }
                            plan.exclude(candidate, Excluded::BreakerOpen);
                            continue;
                        }
                        permit
                    }
                };
                match kind {
                    AttemptKind::First => {
                        backend.reliability.retry_budget.deposit(now);
                        payer = Some(candidate);
                    }
                    AttemptKind::Retry => {
                        let charged = backend_of(payer.unwrap_or(candidate));
                        if !charged
                            .reliability
                            .retry_budget
                            .try_withdraw(policy.budget_percent, now)
                        {
                            charged.metrics.reliability.count_budget_refusal();
                            tracing::debug!(
                                request_id = self.request_id,
                                route = %route.id,
                                backend = %charged.name,
                                "retry budget spent; not retrying"
                            );
                            break;
                        }
                        backend.metrics.reliability.count_retry();
                    }
                }
                if at > now {
                    tokio::time::sleep_until(at).await;
                }
                plan.start(candidate);
                permits[candidate] = permit;
                running[candidate] = true;
                let started = Instant::now();
                in_flight.push(tagged(candidate, started, attempt(backend.clone())));
                if kind == AttemptKind::First {
                    hedge_timer =
                        hedge_at(hedge, &backend.reliability.latency, started, self.deadline);
                }
            }
            let event = tokio::select! {
                biased;
                Some((candidate, started, result)) = in_flight.next() => {
                    Event::Done(candidate, started, result)
                }
                () = sleep_until_some(hedge_timer) => Event::Hedge,
                () = tokio::time::sleep_until(self.deadline) => Event::Deadline,
            };
            match event {
                Event::Hedge => {
                    hedge_timer = None;
                    let Some(config) = hedge else { continue };
                    let Some(candidate) = plan.hedge_candidate() else {
                        continue;
                    };
                    let now = Instant::now();
                    let backend = backend_of(candidate);
                    let permit = match breaker {
                        None => None,
                        Some(breaker_config) => {
                            let state = &backend.reliability.breaker;
                            let permit = state.try_acquire(breaker_config, now);
                            backend.metrics.reliability.set_circuit_state(state.state());
                            if permit.is_none() {
                                backend.metrics.reliability.count_circuit_rejection();
                                plan.exclude(candidate, Excluded::BreakerOpen);
                                continue;
                            }
                            permit
                        }
                    };
                    if !route
                        .reliability
                        .hedge_budget
                        .try_withdraw(config.max_percent, now)
                    {
                        continue;
                    }
                    backend.metrics.reliability.count_hedge();
                    plan.start(candidate);
                    permits[candidate] = permit;
                    running[candidate] = true;
                    hedged = Some(candidate);
                    in_flight.push(tagged(candidate, now, attempt(backend.clone())));
                }
                Event::Deadline => {
                    let now = Instant::now();
                    for candidate in (0..order.len()).filter(|&c| running[c]) {
                        let backend = backend_of(candidate);
                        if let Some(permit) = permits[candidate].take() {
                            permit.record(Outcome::Failure, now);
                            backend
                                .metrics
                                .reliability
                                .set_circuit_state(backend.reliability.breaker.state());
                        }
                        self.metrics
                            .record_attempt(&backend.metrics, Err("total_timeout"));
                        last = Some((
                            backend.clone(),
                            GatewayError::TotalTimeout(route.timeouts.total),
                        ));
                    }
                    break;
                }
                Event::Done(candidate, started, result) => {
                    let now = Instant::now();
                    let backend = backend_of(candidate);
                    running[candidate] = false;
                    let outcome = match &result {
                        Ok(_) => Outcome::Success,
                        Err(error) => Outcome::of_error(error),
                    };
                    if let Some(permit) = permits[candidate].take() {
                        permit.record(outcome, now);
                        backend
                            .metrics
                            .reliability
                            .set_circuit_state(backend.reliability.breaker.state());
                    }
                    match result {
                        Ok(value) => {
                            let took = now.saturating_duration_since(started);
                            backend.reliability.latency.observe(took, now);
                            backend.state.latency.observe(took);
                            self.metrics.record_attempt(&backend.metrics, Ok(()));
                            if hedged == Some(candidate) {
                                backend.metrics.reliability.count_hedge_win();
                            }
                            // Dropping the other attempts (a losing hedge) cancels them upstream.
                            return Attempted {
                                result: Ok(value),
                                backend: Some(backend.clone()),
                                attempts: plan.started(),
                            };
                        }
                        Err(error) => {
                            self.metrics
                                .record_attempt(&backend.metrics, Err(error.metric_label()));
                            self.log_failure(backend, &error, plan.started());
                            // Failures are retried, not hedged.
                            hedge_timer = None;
                            plan.failed(
                                candidate,
                                &Failure::classify(policy, &error),
                                policy,
                                now,
                                rand::random::<f64>(),
                            );
                            last = Some((backend.clone(), error));
                        }
                    }
                }
            }
        }
        let attempts = plan.started();
        match (last, shortest_open) {
            (Some((backend, error)), _) => Attempted {
                result: Err(error),
                backend: Some(backend),
                attempts,
            },
            (None, Some(open)) => Attempted {
                result: Err(GatewayError::CircuitOpen {
                    route: route.id.to_string(),
                    retry_after: open.max(MIN_CIRCUIT_RETRY_AFTER),
                }),
                backend: None,
                attempts,
            },
            (None, None) => Attempted {
                result: Err(GatewayError::NoEligibleBackend {
                    route: route.id.to_string(),
                    reason: "no candidate backend",
                }),
                backend: None,
                attempts,
            },
        }
    }

    /// The candidates with clear outliers (by their breakers' error windows) moved behind their peers.
    fn attempt_order(&self, breaker: Option<&BreakerConfig>) -> Vec<usize> {
        let mut order = self.candidates.to_vec();
        if let Some(config) = breaker
            && order.len() > 1
        {
            let now = Instant::now();
            let windows: Vec<WindowCounts> = self
                .route
                .backends
                .iter()
                .map(|backend| backend.reliability.breaker.stats(now).window)
                .collect();
            demote(&mut order, &outliers(&windows, config.min_requests.into()));
        }
        order
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

    /// Dispatches a chat request (streaming when `request.stream` is set). With `pass_through`, a
    /// non-streaming OpenAI-wire answer may come back as its upstream bytes
    /// ([`ChatAnswer::PassThrough`]); callers that need the parsed completion pass `false`.
    pub async fn chat(&self, request: &ChatRequest, pass_through: bool) -> Attempted<ChatAnswer> {
        let timeouts = self.route.timeouts;
        let breaker = self.route.config.circuit_breaker;
        self.run(|backend| {
            traced_attempt(backend.clone(), Operation::Chat, async move {
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
                    let late_failure = LateFailure {
                        backend: backend.clone(),
                        breaker,
                    };
                    open_stream(
                        &backend,
                        body,
                        first_item_by,
                        timeouts.first_byte,
                        late_failure,
                    )
                    .await
                    .map(|stream| ChatAnswer::Stream(Box::new(stream)))
                } else {
                    let bytes = read_body(body, MAX_RESPONSE_BODY, timeouts.idle).await?;
                    if pass_through
                        && let Some(raw) =
                            providers::passthrough::raw_chat_response(backend.provider, &bytes)
                    {
                        return Ok(ChatAnswer::PassThrough(Box::new(raw)));
                    }
                    let completion = providers::parse_chat_response(
                        backend.provider,
                        &bytes,
                        providers::unix_now(),
                    )?;
                    Ok(ChatAnswer::Complete(Box::new(completion)))
                }
            })
        })
        .await
    }

    /// Dispatches an embeddings request.
    pub async fn embeddings(&self, request: &EmbeddingsRequest) -> Attempted<EmbeddingsOutcome> {
        let timeouts = self.route.timeouts;
        self.run(|backend| {
            traced_attempt(backend.clone(), Operation::Embeddings, async move {
                let upstream_request =
                    providers::build_embeddings_request(&backend.target, request)?;
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
    let mut error = providers::parse_error_response(
        backend.provider,
        parts.status.as_u16(),
        &parts.headers,
        &bytes,
    );
    // The adapters read `retry-after-ms` and delta-seconds; the HTTP-date form and exhausted
    // rate-limit resets are read here.
    if error.retry_after.is_none() {
        error.retry_after = retry_hint(&parts.headers, SystemTime::now());
    }
    GatewayError::Upstream(error)
}

/// Reads the stream until its first translated item. An error item (or a stream that ends before any
/// item) fails the attempt while nothing has reached the client.
async fn open_stream(
    backend: &Backend,
    mut body: Incoming,
    deadline: Instant,
    first_byte: Duration,
    late_failure: LateFailure,
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
        late_failure,
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
