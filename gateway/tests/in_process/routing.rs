//! Backend selection through the real pipeline: strategies, fallback, regions, route parameters.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_crds::config::PriceConfig;
use sluice_crds::v1alpha1::{RequestParameters, RoutingStrategy};

use crate::support::*;

async fn chat_debug(gw: &TestGateway, model: &str) -> (u16, String, String) {
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body(model))
        .header("x-sluice-debug", "1")
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (backend, attempts) = (header("x-sluice-backend"), header("x-sluice-attempts"));
    assert_eq!(header("x-sluice-route"), "team/chat");
    assert_eq!(header("x-sluice-cache"), "off");
    (response.status().as_u16(), backend, attempts)
}

#[tokio::test]
async fn priority_failover_moves_to_the_next_backend_on_a_retryable_failure() {
    let failing = Upstream::start(|_| {
        Reply::Json(
            503,
            openai_error("overloaded", "server_error", "overloaded"),
        )
    })
    .await;
    let healthy = Upstream::openai("from backup").await;
    let mut primary = openai_backend("primary", &failing);
    primary.priority = 0;
    let mut backup = openai_backend("backup", &healthy);
    backup.priority = 10;
    // Declared backup-first: priority, not declaration order, decides.
    let fixture =
        Fixture::default().with_route(route("team/chat", "gpt-4o", vec![backup, primary]));
    let gw = TestGateway::start(fixture.snapshot()).await;
    let (status, backend, attempts) = chat_debug(&gw, "gpt-4o").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (200, "backup", "2")
    );
    assert_eq!((failing.count(), healthy.count()), (1, 1));
    let response = gw
        .post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("x-sluice-backend").is_none(),
        "decision headers are opt-in"
    );
}

#[tokio::test]
async fn a_client_error_from_upstream_is_not_retried() {
    let strict = Upstream::start(|_| {
        Reply::Json(
            400,
            openai_error("bad temperature", "invalid_request_error", "invalid_value"),
        )
    })
    .await;
    let other = Upstream::openai("never").await;
    let mut second = openai_backend("second", &other);
    second.priority = 1;
    let fixture = Fixture::default().with_route(route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("first", &strict), second],
    ));
    let gw = TestGateway::start(fixture.snapshot()).await;
    let (status, backend, attempts) = chat_debug(&gw, "gpt-4o").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (400, "first", "1")
    );
    assert_eq!(other.count(), 0);
}

#[tokio::test]
async fn weighted_routing_splits_exactly_by_weight() {
    let a = Upstream::openai("a").await;
    let b = Upstream::openai("b").await;
    let mut heavy = openai_backend("heavy", &a);
    heavy.weight = 3;
    let light = openai_backend("light", &b);
    let mut chat = route("team/chat", "gpt-4o", vec![heavy, light]);
    chat.strategy = RoutingStrategy::Weighted;
    let gw = TestGateway::start(Fixture::default().with_route(chat).snapshot()).await;
    let mut sequence = String::new();
    for _ in 0..40 {
        let (status, backend, _) = chat_debug(&gw, "gpt-4o").await;
        assert_eq!(status, 200);
        sequence.push(if backend == "heavy" { 'H' } else { 'L' });
    }
    assert_eq!((a.count(), b.count()), (30, 10));
    assert!(
        sequence.starts_with("HHLHHHLH"),
        "smooth, not bursty: {sequence}"
    );
}

#[tokio::test]
async fn least_latency_prefers_the_faster_backend_once_both_are_measured() {
    let slow = Upstream::start(|_| {
        Reply::Delayed(
            Duration::from_millis(80),
            Box::new(Reply::Json(200, openai_completion("slow"))),
        )
    })
    .await;
    let fast = Upstream::openai("fast").await;
    let mut chat = route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("slow", &slow), openai_backend("fast", &fast)],
    );
    chat.strategy = RoutingStrategy::LeastLatency;
    let gw = TestGateway::start(Fixture::default().with_route(chat).snapshot()).await;
    for _ in 0..10 {
        assert_eq!(gw.chat(&chat_body("gpt-4o")).await.0, 200);
    }
    assert_eq!(
        slow.count(),
        1,
        "measured once (unmeasured backends are explored first), then avoided"
    );
    assert_eq!(fast.count(), 9);
}

#[tokio::test]
async fn lowest_cost_picks_the_cheapest_backend_and_falls_back_to_the_next_cheapest() {
    let pricey = Upstream::openai("pricey").await;
    let cheap =
        Upstream::start(|_| Reply::Json(500, openai_error("down", "server_error", "down"))).await;
    let middle = Upstream::openai("middle").await;
    let priced = |name, upstream: &Upstream, input: f64| {
        let mut b = openai_backend(name, upstream);
        b.pricing = Some(PriceConfig {
            input_per_million: input,
            output_per_million: input * 4.0,
            cached_input_per_million: input / 2.0,
        });
        b
    };
    let mut chat = route(
        "team/chat",
        "gpt-4o",
        vec![
            priced("pricey", &pricey, 10.0),
            priced("cheap", &cheap, 0.1),
            priced("middle", &middle, 1.0),
        ],
    );
    chat.strategy = RoutingStrategy::LowestCost;
    let gw = TestGateway::start(Fixture::default().with_route(chat).snapshot()).await;
    let (status, backend, attempts) = chat_debug(&gw, "gpt-4o").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (200, "middle", "2")
    );
    assert_eq!((cheap.count(), middle.count(), pricey.count()), (1, 1, 0));
}

#[tokio::test]
async fn region_restrictions_of_route_and_key_are_never_left_even_on_fallback() {
    let eu =
        Upstream::start(|_| Reply::Json(500, openai_error("down", "server_error", "down"))).await;
    let us = Upstream::openai("us").await;
    let mut in_eu = openai_backend("eu", &eu);
    in_eu.region = Some("eu".into());
    let mut in_us = openai_backend("us", &us);
    in_us.region = Some("us".into());
    let mut chat = route("team/chat", "gpt-4o", vec![in_eu, in_us]);
    chat.allowed_regions = vec!["eu".into()];
    const US_KEY: &str = "sk-test-us-only-0123456789abcdefghijkl";
    let mut us_only = key("team/us", &[]);
    us_only.allowed_regions = vec!["us".into()];
    let gw = TestGateway::start(
        Fixture::default()
            .with_route(chat)
            .with_key(us_only, US_KEY)
            .snapshot(),
    )
    .await;

    let (status, body) = gw.chat(&chat_body("gpt-4o")).await;
    assert_eq!(status, 503, "the only in-region backend failed: {body}");
    assert_eq!(body["error"]["code"], "region_unavailable", "{body}");
    assert_eq!(us.count(), 0, "never sent out of region");

    let disjoint = gw
        .post("/v1/chat/completions", US_KEY, &chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(disjoint.status(), 503);
    let body: Value = disjoint.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_backend_available");
    assert_eq!(us.count(), 0);
}

#[tokio::test]
async fn route_defaults_overrides_and_system_prefix_reach_the_upstream() {
    let upstream = Upstream::openai("ok").await;
    let mut chat = route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("primary", &upstream)],
    );
    chat.defaults = RequestParameters {
        temperature: Some(0.3),
        top_p: None,
        max_tokens: Some(256),
    };
    chat.overrides = RequestParameters {
        temperature: None,
        top_p: Some(0.9),
        max_tokens: None,
    };
    chat.system_prompt_prefix = Some("Follow the company policy.".into());
    let gw = TestGateway::start(Fixture::default().with_route(chat).snapshot()).await;
    let body = json!({"model": "gpt-4o", "top_p": 0.1, "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]});
    assert_eq!(gw.chat(&body).await.0, 200);
    let received = upstream.requests();
    assert_eq!(received[0].path, "/v1/chat/completions");
    let sent = &received[0].body;
    assert_eq!(
        sent["model"], "upstream-model",
        "the backend's model name is sent upstream"
    );
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["top_p"], 0.9);
    assert_eq!(sent["max_completion_tokens"], 256);
    assert_eq!(
        sent["messages"][0]["content"],
        "Follow the company policy.\n\nBe terse."
    );
    assert_eq!(sent["messages"].as_array().unwrap().len(), 2);
}
