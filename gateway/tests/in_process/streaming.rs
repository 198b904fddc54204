//! Streaming: unbuffered relay, usage chunk on request, failures before and after the first byte,
//! client disconnects, the Anthropic surface.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::*;

fn stream_body(include_usage: bool) -> Value {
    let mut body = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hello"}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// `data:` payloads of an SSE body.
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

async fn one_route(upstream: &Upstream) -> TestGateway {
    TestGateway::start(
        Fixture::default()
            .with_route(route(
                "team/chat",
                "gpt-4o",
                vec![openai_backend("primary", upstream)],
            ))
            .snapshot(),
    )
    .await
}

#[tokio::test]
async fn chunks_are_relayed_as_they_arrive_not_buffered() {
    let upstream = Upstream::start(|_| {
        Reply::Sse(openai_stream_with_delay(
            &["one", "two", "three"],
            true,
            Duration::from_millis(300),
        ))
    })
    .await;
    let gw = one_route(&upstream).await;
    let started = Instant::now();
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut frames = response.bytes_stream();
    let mut seen = String::new();
    let mut first_content_at = None;
    while let Some(frame) = frames.next().await {
        seen.push_str(std::str::from_utf8(&frame.unwrap()).unwrap());
        if first_content_at.is_none() && seen.contains("\"one\"") {
            first_content_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_content_at.expect("content arrived");
    // The upstream needs ≥ 1.2 s for the whole stream; the first content must arrive ~300 ms in.
    assert!(total >= Duration::from_millis(1200), "{total:?}");
    assert!(
        first < Duration::from_millis(900),
        "first content after {first:?}: buffered?"
    );
    let data = data_lines(&seen);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let contents: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(contents, "onetwothree");
    assert!(
        !seen.contains("\"usage\""),
        "no usage chunk unless asked for: {seen}"
    );
    let sent = &upstream.requests()[0].body;
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "usage is always requested upstream for metering"
    );
}

#[tokio::test]
async fn the_usage_chunk_reaches_clients_that_ask_and_is_metered_either_way() {
    let upstream = Upstream::start(|_| Reply::Sse(openai_stream(&["hi"], true))).await;
    let gw = one_route(&upstream).await;
    let text = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = data_lines(&text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 17);
    let _ = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(false))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"provider="openai",kind="input"} 24"#),
        "both streams metered: {metrics}"
    );
    assert!(
        metrics.contains("sluice_time_to_first_token_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_error_event_first_in_a_200_stream_falls_back_before_anything_reaches_the_client() {
    let broken = Upstream::start(|_| {
        let error = json!({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}});
        Reply::Sse(vec![(Duration::ZERO, format!("data: {error}\n\n"))])
    })
    .await;
    let healthy = Upstream::start(|_| Reply::Sse(openai_stream(&["fine"], true))).await;
    let mut second = openai_backend("second", &healthy);
    second.priority = 1;
    let chat = route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("first", &broken), second],
    );
    let gw = TestGateway::start(Fixture::default().with_route(chat).snapshot()).await;
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(false))
        .header("x-sluice-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-sluice-backend"], "second");
    let text = response.text().await.unwrap();
    assert!(text.contains("fine") && !text.contains("error"), "{text}");
}

#[tokio::test]
async fn a_stream_cut_after_the_first_bytes_ends_with_an_error_event() {
    let upstream = Upstream::start(|_| {
        let mut events = openai_stream(&["partial"], false);
        events.truncate(2);
        Reply::Sse(events)
    })
    .await;
    let gw = one_route(&upstream).await;
    let text = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(false))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = data_lines(&text);
    assert!(text.contains("partial"));
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        upstream.count(),
        1,
        "never re-sent once bytes reached the client"
    );
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_stream() {
    let upstream = Upstream::start(|_| {
        Reply::Sse(openai_stream_with_delay(
            &["a", "b", "c", "d", "e", "f", "g", "h"],
            false,
            Duration::from_millis(200),
        ))
    })
    .await;
    let gw = one_route(&upstream).await;
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &stream_body(false))
        .send()
        .await
        .unwrap();
    let mut frames = response.bytes_stream();
    let first = frames.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(frames);
    let deadline = Instant::now() + Duration::from_secs(3);
    while upstream
        .cancelled_streams
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the upstream never saw the stream cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_errors_total{class="client_disconnect",origin="client"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_anthropic_surface_streams_anthropic_events_from_an_openai_backend() {
    let upstream = Upstream::start(|_| Reply::Sse(openai_stream(&["Hel", "lo"], true))).await;
    let gw = one_route(&upstream).await;
    let body = json!({"model": "gpt-4o", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let text = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", APP_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert!(
        events.contains(&"content_block_delta") && events.contains(&"message_delta"),
        "{events:?}"
    );
    let delta = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 5);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}
