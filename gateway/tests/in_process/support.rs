//! In-process harness: scripted upstreams that record what they receive, snapshot fixtures, and a gateway
//! started on port 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sluice_crds::config::{
    BackendConfig, GatewayConfig, GatewaySecrets, KeyConfig, KeyHash, PriceConfig, RetryConfig,
    RouteConfig, SCHEMA_VERSION, SecretValue, Snapshot, TimeoutConfig, hash_key,
};
use sluice_crds::v1alpha1::{Provider, RequestParameters, RetryOn, RoutingStrategy};
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use tokio::net::TcpListener;

/// The key most tests present.
pub const APP_KEY: &str = "sk-test-app-0123456789abcdefghijklmnop";
/// Its id.
pub const APP_KEY_ID: &str = "team/app";
/// The credential id backends use.
pub const CREDENTIAL: &str = "team/provider/api-key";
/// The provider key upstreams must receive (and clients must never see).
pub const PROVIDER_KEY: &str = "sk-provider-secret-do-not-leak";

/// A request an upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// What a scripted upstream answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status and JSON body.
    Json(u16, Value),
    /// Status, JSON body and headers.
    JsonWithHeaders(u16, Value, Vec<(&'static str, &'static str)>),
    /// A 200 SSE stream: each event is sent after its delay.
    Sse(Vec<(Duration, String)>),
    /// Waits this long, then answers.
    Delayed(Duration, Box<Reply>),
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A scripted upstream on a loopback port.
pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Streams whose body the gateway dropped before the last event.
    pub cancelled_streams: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct CancelGuard {
    done: bool,
    counter: Arc<AtomicUsize>,
}

impl CancelGuard {
    fn complete(&mut self) {
        self.done = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(status: u16, body: &Value, headers: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

async fn render(reply: Reply, cancelled: Arc<AtomicUsize>) -> Response<Body> {
    match reply {
        Reply::Json(status, body) => full(status, &body, &[]),
        Reply::JsonWithHeaders(status, body, headers) => full(status, &body, &headers),
        Reply::Delayed(delay, reply) => {
            tokio::time::sleep(delay).await;
            Box::pin(render(*reply, cancelled)).await
        }
        Reply::Sse(events) => {
            let guard = CancelGuard {
                done: false,
                counter: cancelled,
            };
            let stream = futures::stream::unfold(
                (events.into_iter(), guard),
                |(mut events, mut guard)| async move {
                    match events.next() {
                        Some((delay, event)) => {
                            tokio::time::sleep(delay).await;
                            Some((
                                Ok::<_, Infallible>(Frame::data(Bytes::from(event))),
                                (events, guard),
                            ))
                        }
                        None => {
                            guard.complete();
                            None
                        }
                    }
                },
            );
            let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            response
        }
    }
}

impl Upstream {
    /// Starts an upstream answering every request with `handler`.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cancelled_streams = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, cancelled) = (requests.clone(), cancelled_streams.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, recorded, cancelled) =
                    (handler.clone(), recorded.clone(), cancelled.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let (handler, recorded, cancelled) =
                                (handler.clone(), recorded.clone(), cancelled.clone());
                            async move {
                                let path = request
                                    .uri()
                                    .path_and_query()
                                    .map(ToString::to_string)
                                    .unwrap_or_default();
                                let headers = request.headers().clone();
                                let bytes = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                                let request = Recorded {
                                    path,
                                    headers,
                                    body,
                                };
                                let reply = handler(&request);
                                recorded.lock().unwrap().push(request);
                                Ok::<_, Infallible>(render(reply, cancelled).await)
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            cancelled_streams,
            task,
        }
    }

    /// An upstream that always answers with a fixed OpenAI completion saying `text`.
    pub async fn openai(text: &'static str) -> Self {
        Self::start(move |request| {
            if request.body["stream"] == json!(true) {
                Reply::Sse(openai_stream(&[text], true))
            } else {
                Reply::Json(200, openai_completion(text))
            }
        })
        .await
    }

    /// Base URL in OpenAI's style (with `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A non-streaming OpenAI chat completion.
pub fn openai_completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    })
}

/// An OpenAI SSE stream with one content chunk per piece (no delays), optionally a usage chunk, and `[DONE]`.
pub fn openai_stream(pieces: &[&str], usage: bool) -> Vec<(Duration, String)> {
    openai_stream_with_delay(pieces, usage, Duration::ZERO)
}

/// Like [`openai_stream`] with `delay` before every event after the first.
pub fn openai_stream_with_delay(
    pieces: &[&str],
    usage: bool,
    delay: Duration,
) -> Vec<(Duration, String)> {
    let chunk = |delta: Value, finish: Value| {
        let value = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {value}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        pieces
            .iter()
            .map(|piece| chunk(json!({"content": piece}), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    if usage {
        let value = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model",
            "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}});
        events.push(format!("data: {value}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (if i == 0 { Duration::ZERO } else { delay }, e))
        .collect()
}

/// An OpenAI error body.
pub fn openai_error(message: &str, kind: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// A backend of `provider` at `endpoint`.
pub fn backend(name: &str, provider: Provider, endpoint: String) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        provider,
        model: "upstream-model".into(),
        endpoint,
        credential: Some(CREDENTIAL.into()),
        weight: 1,
        priority: 0,
        region: None,
        context_window: None,
        pricing: Some(PriceConfig {
            input_per_million: 1.0,
            output_per_million: 2.0,
            cached_input_per_million: 0.5,
        }),
        azure: None,
    }
}

/// An OpenAI backend pointing at `upstream`.
pub fn openai_backend(name: &str, upstream: &Upstream) -> BackendConfig {
    backend(name, Provider::Openai, upstream.url())
}

/// A route with fast test timeouts and retries on every retryable failure.
pub fn route(id: &str, model: &str, backends: Vec<BackendConfig>) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        model: model.into(),
        aliases: vec![],
        strategy: RoutingStrategy::PriorityFailover,
        backends,
        retry: RetryConfig {
            attempts: 3,
            retry_on: vec![
                RetryOn::ConnectError,
                RetryOn::Timeout,
                RetryOn::ServerError,
                RetryOn::RateLimited,
                RetryOn::ContextLength,
            ],
            provider_error_codes: vec![],
            initial_backoff_ms: 5,
            max_backoff_ms: 20,
            retry_after_cap_ms: 1_000,
            budget_percent: 20,
        },
        timeouts: TimeoutConfig {
            connect_ms: 1_000,
            first_byte_ms: 5_000,
            idle_ms: 5_000,
            total_ms: 20_000,
        },
        circuit_breaker: None,
        hedge: None,
        cache: None,
        rate_limit: None,
        budgets: vec![],
        defaults: RequestParameters::default(),
        overrides: RequestParameters::default(),
        system_prompt_prefix: None,
        pii: None,
        allowed_regions: vec![],
        guardrails: None,
        stickiness: None,
        shadow: None,
        semantic_cache: None,
    }
}

/// A key config allowed to call `models` (all when empty).
pub fn key(id: &str, models: &[&str]) -> KeyConfig {
    KeyConfig {
        id: id.into(),
        prefix: "sk-test".into(),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        denied_models: vec![],
        max_prompt_tokens: None,
        max_tokens: None,
        allowed_regions: vec![],
        rate_limit: None,
        budgets: vec![],
        expires_at: None,
        disabled: false,
    }
}

/// Builds snapshots.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub config: GatewayConfig,
    pub secrets: GatewaySecrets,
}

impl Default for Fixture {
    fn default() -> Self {
        let mut secrets = GatewaySecrets::default();
        secrets
            .credentials
            .insert(CREDENTIAL.into(), SecretValue::new(PROVIDER_KEY));
        let config = GatewayConfig {
            schema_version: SCHEMA_VERSION,
            gateway: "default".into(),
            ..GatewayConfig::default()
        };
        let mut fixture = Self { config, secrets };
        fixture = fixture.with_key(key(APP_KEY_ID, &[]), APP_KEY);
        fixture
    }
}

impl Fixture {
    pub fn with_route(mut self, route: RouteConfig) -> Self {
        self.config.routes.push(route);
        self
    }

    /// Adds a key with one accepted value.
    pub fn with_key(self, config: KeyConfig, secret: &str) -> Self {
        self.with_key_hashes(
            config,
            vec![KeyHash {
                sha256: hash_key(secret),
                not_after: None,
            }],
        )
    }

    pub fn with_key_hashes(mut self, config: KeyConfig, hashes: Vec<KeyHash>) -> Self {
        self.secrets.key_hashes.insert(config.id.clone(), hashes);
        self.config.keys.retain(|k| k.id != config.id);
        self.config.keys.push(config);
        self
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.config.clone(), self.secrets.clone())
    }
}

/// A gateway on loopback port 0 with an HTTP client.
pub struct TestGateway {
    pub gateway: Gateway,
    pub client: reqwest::Client,
}

impl TestGateway {
    pub async fn start(snapshot: Snapshot) -> Self {
        Self::start_with(snapshot, |_| {}).await
    }

    pub async fn start_with(snapshot: Snapshot, adjust: impl FnOnce(&mut GatewayOptions)) -> Self {
        Self::start_source(ConfigSource::Static(Box::new(snapshot)), adjust).await
    }

    pub async fn start_source(
        source: ConfigSource,
        adjust: impl FnOnce(&mut GatewayOptions),
    ) -> Self {
        let mut options = GatewayOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        adjust(&mut options);
        let gateway = Gateway::start(options, source).await.unwrap();
        Self {
            gateway,
            client: reqwest::Client::new(),
        }
    }

    /// `/readyz` status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self
            .client
            .get(self.admin_url("/readyz"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.admin_addr())
    }

    /// `POST path` with `Authorization: Bearer key` and a JSON body.
    pub fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(key).json(body)
    }

    /// A chat completion with the app key; returns status and body.
    pub async fn chat(&self, body: &Value) -> (StatusCode, Value) {
        let response = self
            .post("/v1/chat/completions", APP_KEY, body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A minimal chat body for `model`.
pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
}
