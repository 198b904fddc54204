//! The listeners: HTTP/2 (h2c and h2 over TLS), admin endpoints, graceful drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use sluice_gateway::server::TlsFiles;

use crate::support::*;

async fn h2_chat<IO>(io: IO, authority: &str) -> (http::StatusCode, Value)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("https://{authority}/v1/chat/completions"))
        .header("authorization", format!("Bearer {APP_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat_body("gpt-4o").to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn one_route(upstream: &Upstream) -> Fixture {
    Fixture::default().with_route(route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("primary", upstream)],
    ))
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_on_the_plain_port() {
    let upstream = Upstream::openai("over h2c").await;
    let gw = TestGateway::start(one_route(&upstream).snapshot()).await;
    let tcp = tokio::net::TcpStream::connect(gw.gateway.addr())
        .await
        .unwrap();
    let (status, body) = h2_chat(tcp, &gw.gateway.addr().to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "over h2c");
}

#[tokio::test]
async fn tls_serves_http2_via_alpn_and_http1() {
    let upstream = Upstream::openai("over tls").await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let gw = TestGateway::start_with(one_route(&upstream).snapshot(), |options| {
        options.server.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    })
    .await;
    let port = gw.gateway.addr().port();

    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", gw.gateway.addr())
        .build()
        .unwrap();
    let response = https
        .post(format!("https://localhost:{port}/v1/chat/completions"))
        .bearer_auth(APP_KEY)
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.gateway.addr())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = h2_chat(tls, &format!("localhost:{port}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "over tls");
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let upstream = Upstream::openai("ok").await;
    let snapshot = one_route(&upstream).snapshot();
    let gw = TestGateway::start(snapshot.clone()).await;
    let health = gw
        .client
        .get(gw.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, ready) = gw.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["configHash"], snapshot.hash);
    assert_eq!(ready["source"], "static");
    assert_eq!(gw.chat(&chat_body("gpt-4o")).await.0, 200);
    let metrics = gw
        .client
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"sluice_requests_total{route="team/chat",backend="primary",provider="openai",status_class="2xx"} 1"#,
        "sluice_request_duration_seconds_bucket",
        r#"sluice_tokens_total{route="team/chat",backend="primary",provider="openai",kind="output"} 5"#,
        r#"sluice_cost_usd_total{route="team/chat",backend="primary",provider="openai"}"#,
        &format!(r#"sluice_config_info{{hash="{}"}} 1"#, snapshot.hash),
        "sluice_in_flight_requests 0",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    assert!(!text.contains(PROVIDER_KEY) && !text.contains(APP_KEY));
}

#[tokio::test]
async fn draining_finishes_open_streams_refuses_new_connections_and_turns_unready_first() {
    let upstream = Upstream::start(|_| {
        Reply::Sse(openai_stream_with_delay(
            &["a", "b", "c", "d", "e"],
            false,
            Duration::from_millis(150),
        ))
    })
    .await;
    let gw = TestGateway::start_with(one_route(&upstream).snapshot(), |options| {
        options.drain_delay = Duration::from_millis(300);
        options.drain_timeout = Duration::from_secs(5);
    })
    .await;
    let (addr, admin) = (gw.gateway.addr(), gw.admin_url("/readyz"));
    let body = serde_json::json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let stream = gw
        .post("/v1/chat/completions", APP_KEY, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let client = gw.client.clone();
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = client.get(&admin).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while draining");
    let text = stream.text().await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the open stream finished: {text}"
    );
    assert!(shutdown.await.unwrap(), "drained within the timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    let refused = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(APP_KEY)
        .json(&chat_body("gpt-4o"))
        .send()
        .await;
    assert!(refused.is_err(), "no new connections after the drain");
}
