//! Bad input and failures: status codes, error shapes, request ids, nothing leaked.

use futures::stream;
use serde_json::{Value, json};

use crate::support::*;

async fn simple(upstream: &Upstream) -> TestGateway {
    let fixture = Fixture::default().with_route(route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("primary", upstream)],
    ));
    TestGateway::start_with(fixture.snapshot(), |options| {
        options.app.max_body_bytes = 4096
    })
    .await
}

#[tokio::test]
async fn unknown_model_is_404_in_openai_shape() {
    let upstream = Upstream::openai("hi").await;
    let gw = simple(&upstream).await;
    let (status, body) = gw.chat(&chat_body("gpt-9")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "model");
    assert!(body["error"]["message"].as_str().unwrap().contains("gpt-9"));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_chunked() {
    let upstream = Upstream::openai("hi").await;
    let gw = simple(&upstream).await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let declared = gw
        .post("/v1/chat/completions", APP_KEY, &big)
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let body: Value = declared.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_too_large");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let chunked = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(APP_KEY)
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        chunked.status(),
        413,
        "a chunked body is cut off at the limit"
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let upstream = Upstream::openai("hi").await;
    let gw = simple(&upstream).await;
    let cases = [
        (r#"{"model": "gpt-4o", "messages": ["#, "invalid JSON body"),
        (r#"{"model": "gpt-4o"}"#, "messages: missing field"),
        (
            r#"{"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}"#,
            "messages[0].role",
        ),
        (
            r#"{"model": "gpt-4o", "messages": []}"#,
            "messages: must not be empty",
        ),
    ];
    for (body, expected) in cases {
        let response = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(APP_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let upstream = Upstream::openai("hi").await;
    let gw = simple(&upstream).await;
    let unknown = gw
        .client
        .post(gw.url("/v1/completions"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    let wrong = gw
        .client
        .get(gw.url("/v1/chat/completions"))
        .bearer_auth(APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_on_every_response() {
    let upstream = Upstream::openai("hi").await;
    let gw = simple(&upstream).await;
    let echoed = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
    let generated = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(generated.status(), 404);
    assert!(
        generated.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let unauthenticated = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert!(unauthenticated.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn upstream_failures_are_classified_without_leaking_provider_text_or_keys() {
    let upstream = Upstream::start(|_| {
        Reply::Json(
            500,
            openai_error(
                &format!("internal failure for org-secret-123, key {PROVIDER_KEY}"),
                "server_error",
                "boom",
            ),
        )
    })
    .await;
    let gw = simple(&upstream).await;
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"))
        .header("x-sluice-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["x-sluice-attempts"],
        "3",
        "the only backend is retried up to the route's attempts"
    );
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("org-secret") && !text.contains(PROVIDER_KEY),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(upstream.count(), 3);

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_errors_total{class="upstream_server",origin="upstream"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="upstream_server"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_after_trying_every_attempt() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let fixture = Fixture::default().with_route(route(
        "team/chat",
        "gpt-4o",
        vec![backend(
            "dead",
            sluice_crds::v1alpha1::Provider::Openai,
            endpoint,
        )],
    ));
    let gw = TestGateway::start(fixture.snapshot()).await;
    let (status, body) = gw.chat(&chat_body("gpt-4o")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn an_upstream_rate_limit_reaches_the_client_as_429_with_retry_after() {
    let upstream = Upstream::start(|_| {
        Reply::JsonWithHeaders(
            429,
            openai_error(
                "Rate limit reached for org-x",
                "requests",
                "rate_limit_exceeded",
            ),
            vec![("retry-after", "2")],
        )
    })
    .await;
    let gw = simple(&upstream).await;
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        upstream.count(),
        1,
        "a Retry-After above the route's cap is not waited for"
    );
}
