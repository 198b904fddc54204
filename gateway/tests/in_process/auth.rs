//! Virtual-key authentication and scopes.

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use sluice_crds::config::{KeyHash, hash_key};

use crate::support::*;

const EXPIRED: &str = "sk-test-expired-0123456789abcdefghijkl";
const DISABLED: &str = "sk-test-disabled-0123456789abcdefghijk";
const CURRENT: &str = "sk-test-rotated-current-0123456789abcd";
const GRACE: &str = "sk-test-rotated-grace-0123456789abcdef";
const PAST: &str = "sk-test-rotated-past-0123456789abcdefg";

async fn gateway_with_keys(upstream: &Upstream) -> TestGateway {
    let now = Utc::now();
    let mut expired = key("team/expired", &[]);
    expired.expires_at = Some(now - TimeDelta::minutes(1));
    let mut disabled = key("team/disabled", &[]);
    disabled.disabled = true;
    let fixture = Fixture::default()
        .with_route(route(
            "team/chat",
            "gpt-4o",
            vec![openai_backend("primary", upstream)],
        ))
        .with_key(expired, EXPIRED)
        .with_key(disabled, DISABLED)
        .with_key_hashes(
            key("team/rotated", &[]),
            vec![
                KeyHash {
                    sha256: hash_key(CURRENT),
                    not_after: None,
                },
                KeyHash {
                    sha256: hash_key(GRACE),
                    not_after: Some(now + TimeDelta::hours(1)),
                },
                KeyHash {
                    sha256: hash_key(PAST),
                    not_after: Some(now - TimeDelta::seconds(1)),
                },
            ],
        );
    TestGateway::start(fixture.snapshot()).await
}

#[tokio::test]
async fn refused_keys_get_401_with_a_reason_and_never_reach_upstream() {
    let upstream = Upstream::openai("hi").await;
    let gw = gateway_with_keys(&upstream).await;
    let cases = [
        (None, "missing_api_key"),
        (
            Some("sk-nobody-knows-this-key-0123456789"),
            "invalid_api_key",
        ),
        (Some(EXPIRED), "expired_api_key"),
        (Some(DISABLED), "disabled_api_key"),
        (Some(PAST), "rotated_api_key"),
    ];
    let mut messages = std::collections::HashSet::new();
    for (presented, code) in cases {
        let mut request = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o"));
        if let Some(key) = presented {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{code}");
        let text = response.text().await.unwrap();
        if let Some(key) = presented {
            assert!(!text.contains(key), "the key is never echoed: {text}");
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], code, "{text}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        messages.insert(body["error"]["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        messages.len(),
        cases.len(),
        "every rejection has its own message"
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn current_and_grace_period_keys_work_via_bearer_and_x_api_key() {
    let upstream = Upstream::openai("hi").await;
    let gw = gateway_with_keys(&upstream).await;
    for key in [APP_KEY, CURRENT, GRACE] {
        let bearer = gw
            .post("/v1/chat/completions", key, &chat_body("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200, "bearer {key}");
        let header = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .header("x-api-key", key)
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(header.status(), 200, "x-api-key {key}");
    }
    let received = upstream.requests();
    assert_eq!(received.len(), 6);
    for request in received {
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {PROVIDER_KEY}"),
            "the provider key replaces the virtual key"
        );
        assert!(request.headers.get("x-api-key").is_none());
    }
}

#[tokio::test]
async fn model_outside_the_key_scope_is_403_and_the_model_list_shows_only_allowed_models() {
    let upstream = Upstream::openai("hi").await;
    let mut chat = route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("primary", &upstream)],
    );
    chat.aliases = vec!["fast".into()];
    const SCOPED: &str = "sk-test-scoped-0123456789abcdefghijklm";
    let fixture = Fixture::default()
        .with_route(chat)
        .with_route(route(
            "team/claude",
            "claude",
            vec![openai_backend("primary", &upstream)],
        ))
        .with_key(key("team/scoped", &["gpt-4o"]), SCOPED);
    let gw = TestGateway::start(fixture.snapshot()).await;

    let denied = gw
        .post("/v1/chat/completions", SCOPED, &chat_body("claude"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["param"], "model");
    let alias = gw
        .post("/v1/chat/completions", SCOPED, &chat_body("fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        alias.status(),
        200,
        "a scope names a route, so its aliases are allowed too"
    );

    let list = |key: &'static str| {
        let gw = &gw;
        async move {
            let body: Value = gw
                .client
                .get(gw.url("/v1/models"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["object"], "list");
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(SCOPED).await, vec!["gpt-4o", "fast"]);
    assert_eq!(list(APP_KEY).await, vec!["gpt-4o", "fast", "claude"]);
    let anonymous = gw.client.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_anthropic_surface_answers_auth_errors_in_anthropic_shape() {
    let upstream = Upstream::openai("hi").await;
    let gw = gateway_with_keys(&upstream).await;
    let body = serde_json::json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let response = gw
        .client
        .post(gw.url("/v1/messages"))
        .header("x-api-key", EXPIRED)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}
