//! OpenTelemetry traces from the `sluice-gateway` binary, received the way a collector receives them: an
//! OTLP/HTTP endpoint on loopback decoding each protobuf `ExportTraceServiceRequest`. A request becomes one
//! server span with the `gen_ai.*` attributes, the client's W3C trace as parent, and one client span per
//! upstream attempt; no attribute anywhere carries a key.

mod gateway_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use gateway_support::GatewayProcess;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{Span, status};
use prost::Message as _;
use serde_json::json;
use sluice_tests::mock::{Behavior, MockProvider};

const PROVIDER_KEY: &str = "sk-upstream-tracing-provider-key-0123456789";
const VIRTUAL_KEY: &str = "sk-sluice-tracing-test-virtual-key-0123456789abcdef";
const WRONG_KEY: &str = "sk-sluice-not-a-key-of-this-gateway-0123456789abcdef";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A minimal OTLP/HTTP trace receiver: every decoded export request, in arrival order.
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// Anything the receiver refused (wrong path, content type, undecodable body).
    refused: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let exports = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (sink, problems) = (exports.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sink, problems) = (sink.clone(), problems.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (sink, problems) = (sink.clone(), problems.clone());
                        async move { Ok::<_, Infallible>(receive(request, &sink, &problems).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            exports,
            refused,
        })
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        let exports = self.exports.lock().unwrap_or_else(|e| e.into_inner());
        exports
            .iter()
            .flat_map(|export| &export.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.iter().cloned())
            .collect()
    }

    /// Every attribute of every export: resources, scopes, spans, span events and links.
    fn all_attributes(&self) -> Vec<KeyValue> {
        let exports = self.exports.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::new();
        for resource in exports.iter().flat_map(|export| &export.resource_spans) {
            if let Some(resource) = &resource.resource {
                all.extend(resource.attributes.iter().cloned());
            }
            for scope in &resource.scope_spans {
                if let Some(scope) = &scope.scope {
                    all.extend(scope.attributes.iter().cloned());
                }
                for span in &scope.spans {
                    all.extend(span.attributes.iter().cloned());
                    for event in &span.events {
                        all.extend(event.attributes.iter().cloned());
                    }
                    for link in &span.links {
                        all.extend(link.attributes.iter().cloned());
                    }
                }
            }
        }
        all
    }
}

async fn receive(
    request: Request<hyper::body::Incoming>,
    sink: &Mutex<Vec<ExportTraceServiceRequest>>,
    problems: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let refuse = |problem: String| {
        problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(problem);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
        response
    };
    if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" {
        return refuse(format!("{} {}", request.method(), request.uri()));
    }
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type != "application/x-protobuf" {
        return refuse(format!("content-type {content_type:?}"));
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return refuse(format!("reading the body: {error}")),
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(export);
            let mut response = Response::new(Full::new(Bytes::from(
                ExportTraceServiceResponse::default().encode_to_vec(),
            )));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            );
            response
        }
        Err(error) => refuse(format!("decoding ExportTraceServiceRequest: {error}")),
    }
}

fn attributes(span: &Span) -> BTreeMap<&str, &any_value::Value> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.as_str(), value))
        })
        .collect()
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attributes(span).get(key) {
        Some(any_value::Value::StringValue(value)) => Some(value.as_str()),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attributes(span).get(key) {
        Some(any_value::Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

fn describe(span: &Span) -> String {
    format!("{} {:?}", span.name, attributes(span))
}

fn manifests(mock: &MockProvider) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: obs}}
stringData: {{provider: {PROVIDER_KEY}, client: {VIRTUAL_KEY}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: chat, namespace: obs}}
spec:
  model: chat-default
  aliases: [gpt-4o]
  backends:
    - {{name: primary, provider: openai, model: gpt-4o, endpoint: "{}", credentialsRef: {{name: keys, key: provider}}}}
  retry: {{attempts: 2, retryOn: [5xx], initialBackoff: 10ms, maxBackoff: 20ms}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: obs}}
spec:
  secretRef: {{name: keys, key: client}}
"#,
        mock.openai_base_url()
    )
}

async fn post_chat(
    gateway: &GatewayProcess,
    key: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn write_manifests(dir: &Path, mock: &MockProvider) -> Result<()> {
    std::fs::write(dir.join("routes.yaml"), manifests(mock))?;
    Ok(())
}

#[tokio::test]
async fn requests_become_gen_ai_spans_with_one_child_per_attempt_and_no_secrets() -> Result<()> {
    let collector = Collector::start().await?;
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let dir = tempfile::tempdir()?;
    write_manifests(dir.path(), &mock)?;
    let mut gateway = GatewayProcess::spawn(&[
        "--local",
        dir.path().to_str().context("path")?,
        "--otlp-endpoint",
        &collector.base_url(),
    ])?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    ensure!(gateway.readiness().await?["ready"] == true);

    // 1. Non-streaming, called through the alias, inside the client's trace; the first attempt gets a 500.
    mock.push(Behavior::status(500));
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let (status, body) = post_chat(
        &gateway,
        VIRTUAL_KEY,
        &[
            ("x-request-id", "trace-chat-1"),
            ("traceparent", &traceparent),
        ],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "two attempts please"}]}),
    )
    .await?;
    ensure!(status == 200, "{status} {body}");

    // 2. Streaming with usage.
    let (status, body) = post_chat(
        &gateway,
        VIRTUAL_KEY,
        &[("x-request-id", "trace-stream-1")],
        json!({"model": "chat-default", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "stream three words"}]}),
    )
    .await?;
    ensure!(
        status == 200 && body.contains("data: [DONE]"),
        "{status} {body}"
    );

    // 3. A key the gateway does not know.
    let (status, _) = post_chat(
        &gateway,
        WRONG_KEY,
        &[("x-request-id", "trace-unauthorized-1")],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await?;
    ensure!(status == 401);

    // SIGTERM flushes the spans still queued in the batch processor.
    let exit = gateway.terminate(Duration::from_secs(15))?;
    ensure!(exit.success(), "exit status {exit}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.spans().len() < 6 {
        if Instant::now() > deadline {
            bail!(
                "expected 3 request and 3 attempt spans, received {:?}; refused: {:?}; log:\n{}",
                collector.spans().iter().map(describe).collect::<Vec<_>>(),
                collector.refused.lock().unwrap_or_else(|e| e.into_inner()),
                gateway.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = collector
        .refused
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ensure!(
        refused.is_empty(),
        "the receiver refused exports: {refused:?}"
    );
    let spans = collector.spans();
    let request = |id: &str| -> Result<Span> {
        spans
            .iter()
            .find(|span| text(span, "request_id") == Some(id))
            .cloned()
            .with_context(|| {
                format!(
                    "no span for request {id}: {:?}",
                    spans.iter().map(describe).collect::<Vec<_>>()
                )
            })
    };
    let children = |parent: &Span| -> Vec<Span> {
        spans
            .iter()
            .filter(|span| span.parent_span_id == parent.span_id)
            .cloned()
            .collect()
    };

    // The non-streaming request: a server span continuing the client's trace.
    let chat = request("trace-chat-1")?;
    ensure!(chat.kind == SpanKind::Server as i32, "{}", describe(&chat));
    ensure!(
        chat.name == "POST /v1/chat/completions",
        "{}",
        describe(&chat)
    );
    ensure!(hex(&chat.trace_id) == TRACE_ID, "not in the client's trace");
    ensure!(
        hex(&chat.parent_span_id) == PARENT_SPAN_ID,
        "not the client's child"
    );
    for (key, expected) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.system", "openai"),
        ("http.request.method", "POST"),
        ("http.route", "/v1/chat/completions"),
        ("sluice.route", "obs/chat"),
        ("sluice.backend", "primary"),
        ("sluice.key", "obs/app"),
    ] {
        ensure!(
            text(&chat, key) == Some(expected),
            "{key} should be {expected}: {}",
            describe(&chat)
        );
    }
    ensure!(
        text(&chat, "gen_ai.response.model").is_some_and(|model| model.starts_with("gpt-4o")),
        "{}",
        describe(&chat)
    );
    ensure!(
        text(&chat, "gen_ai.response.id").is_some_and(|id| !id.is_empty()),
        "{}",
        describe(&chat)
    );
    ensure!(int(&chat, "http.response.status_code") == Some(200));
    ensure!(
        int(&chat, "sluice.attempts") == Some(2),
        "{}",
        describe(&chat)
    );
    ensure!(int(&chat, "gen_ai.usage.input_tokens").is_some_and(|n| n > 0));
    ensure!(int(&chat, "gen_ai.usage.output_tokens").is_some_and(|n| n > 0));

    // One client span per upstream attempt, the failed one marked as such.
    let mut attempts = children(&chat);
    attempts.sort_by_key(|span| span.start_time_unix_nano);
    ensure!(
        attempts.len() == 2,
        "{:?}",
        attempts.iter().map(describe).collect::<Vec<_>>()
    );
    for attempt in &attempts {
        ensure!(
            attempt.kind == SpanKind::Client as i32,
            "{}",
            describe(attempt)
        );
        ensure!(attempt.name == "chat gpt-4o", "{}", describe(attempt));
        ensure!(attempt.trace_id == chat.trace_id);
        ensure!(text(attempt, "gen_ai.operation.name") == Some("chat"));
        ensure!(text(attempt, "gen_ai.provider.name") == Some("openai"));
        ensure!(text(attempt, "gen_ai.request.model") == Some("gpt-4o"));
        ensure!(text(attempt, "server.address") == Some("127.0.0.1"));
        ensure!(int(attempt, "server.port") == Some(i64::from(mock.addr().port())));
        ensure!(
            attempt.start_time_unix_nano >= chat.start_time_unix_nano
                && attempt.end_time_unix_nano <= chat.end_time_unix_nano,
            "an attempt lies within its request"
        );
    }
    let (failed, succeeded) = (&attempts[0], &attempts[1]);
    ensure!(
        int(failed, "http.response.status_code") == Some(500),
        "{}",
        describe(failed)
    );
    ensure!(text(failed, "error.type").is_some(), "{}", describe(failed));
    ensure!(
        failed.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32),
        "{}",
        describe(failed)
    );
    ensure!(
        text(succeeded, "error.type").is_none(),
        "{}",
        describe(succeeded)
    );

    // The stream: usage arrives at its end and its span lasts until then.
    let stream = request("trace-stream-1")?;
    ensure!(
        hex(&stream.trace_id) != TRACE_ID,
        "a new trace without traceparent"
    );
    ensure!(
        text(&stream, "gen_ai.request.model") == Some("chat-default"),
        "{}",
        describe(&stream)
    );
    ensure!(
        stream
            .attributes
            .iter()
            .any(|kv| kv.key == "sluice.streamed")
    );
    ensure!(
        int(&stream, "gen_ai.usage.output_tokens").is_some_and(|n| n > 0),
        "{}",
        describe(&stream)
    );
    let stream_attempts = children(&stream);
    ensure!(stream_attempts.len() == 1, "one attempt");
    ensure!(stream.end_time_unix_nano >= stream_attempts[0].end_time_unix_nano);

    // The refused key: a 401 server span without attempts and without the key.
    let unauthorized = request("trace-unauthorized-1")?;
    ensure!(int(&unauthorized, "http.response.status_code") == Some(401));
    ensure!(children(&unauthorized).is_empty());
    ensure!(
        unauthorized
            .status
            .as_ref()
            .is_none_or(|s| s.code != status::StatusCode::Error as i32),
        "a client error is not the server's error"
    );

    // No attribute anywhere carries a key or an Authorization value.
    let resource_service = collector
        .all_attributes()
        .into_iter()
        .find(|kv| kv.key == "service.name");
    ensure!(
        format!("{resource_service:?}").contains("sluice-gateway"),
        "{resource_service:?}"
    );
    for kv in collector.all_attributes() {
        let rendered = format!("{:?}", kv.value);
        for secret in [VIRTUAL_KEY, WRONG_KEY, PROVIDER_KEY, "Bearer"] {
            ensure!(
                !rendered.contains(secret) && !kv.key.contains(secret),
                "attribute {} carries a secret: {rendered}",
                kv.key
            );
        }
        ensure!(
            !kv.key.to_ascii_lowercase().contains("authorization"),
            "{}",
            kv.key
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
