//! PII redaction, guardrails, data residency and traffic experiments, end to end: the `sluice-gateway`
//! binary in local mode in front of wire-faithful mock providers on loopback.
//!
//! - PII: the mock proves the upstream received masked text; answers are masked too (streamed ones
//!   included, with entities split across chunks); `block` refuses with 400; `detect-only` only counts.
//! - Guardrails: caps on `max_tokens` (filled in when absent) and prompt size, blocked patterns, per-key
//!   deny lists — each refused with its OpenAI-shaped error before anything goes upstream.
//! - Residency: with the only in-region backend down, the request fails with 503 instead of leaving the
//!   region, while the same backends without the restriction fall back.
//! - Shadow traffic: a slow shadow backend changes neither the client's latency nor its answer (both
//!   measured in one run), and is accounted in its own metrics; sticky splits keep a user on one side.

mod gateway_support;
mod policy_support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use policy_support::{LocalGateway, PROVIDER_KEY, chat, metric_sum, metrics, provider_secret};
use serde_json::{Value, json};
use sluice_tests::mock::{Behavior, MockProvider};

fn openai_backend(name: &str, mock: &MockProvider, extra: &str) -> String {
    format!(
        "{{name: {name}, provider: openai, model: gpt-4o-mini, endpoint: \"{}\", credentialsRef: {{name: providers, key: key}}{extra}}}",
        mock.openai_base_url()
    )
}

fn route(name: &str, backends: &[String], spec: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  model: {name}\n  backends: [{}]\n{spec}",
        backends.join(", ")
    )
}

fn key(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: VirtualKey\nmetadata: {{name: {name}, namespace: demo}}\nspec: {spec}\n"
    )
}

fn user(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The text of the last message the mock received.
fn received_text(mock: &MockProvider) -> Result<String> {
    let request = mock.last_request().context("the mock received nothing")?;
    let messages = request.body["messages"].as_array().context("no messages")?;
    Ok(messages
        .last()
        .and_then(|m| m["content"].as_str())
        .context("no text content")?
        .to_owned())
}

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";

#[tokio::test]
async fn pii_is_masked_before_the_upstream_and_in_answers_blocked_or_only_counted() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let backend = openai_backend("openai", &mock, "");
    let manifests = [
        provider_secret(),
        route(
            "redact",
            std::slice::from_ref(&backend),
            "  piiRedaction: {mode: redact, responses: true}\n",
        ),
        route(
            "block",
            std::slice::from_ref(&backend),
            "  piiRedaction: {mode: block}\n",
        ),
        route(
            "detect",
            std::slice::from_ref(&backend),
            "  piiRedaction: {mode: detect-only}\n",
        ),
        key("app", "{}"),
    ]
    .concat();
    let gateway = LocalGateway::start(&manifests, &[]).await?;
    let (process, app) = (&gateway.process, gateway.key("demo/app")?);
    let prompt = format!("Email {EMAIL}, card {CARD}, thanks");

    // Redact: the upstream sees masks, and so does the client (the mock echoes what it received).
    let answer = chat(process, app, &user("redact", &prompt), &[]).await?;
    ensure!(answer.status == 200, "{}", answer.text);
    let received = received_text(&mock)?;
    ensure!(
        received == "Email [EMAIL], card [CREDIT_CARD], thanks",
        "the upstream received {received:?}"
    );
    ensure!(answer.content()? == received, "{}", answer.text);

    // Embedding inputs are masked the same way.
    let embedded = reqwest::Client::new()
        .post(process.url("/v1/embeddings"))
        .bearer_auth(app)
        .json(&json!({"model": "redact", "input": prompt}))
        .send()
        .await?;
    ensure!(embedded.status() == 200, "{}", embedded.text().await?);
    let input = mock.last_request().context("no embeddings request")?.body["input"].clone();
    ensure!(
        input == "Email [EMAIL], card [CREDIT_CARD], thanks",
        "the upstream embedded {input}"
    );

    // Answers are masked too, also when an entity is split across stream chunks.
    let leaky = "Reach our agent at agent.smith@corp.example or +44 20 7946 0958 today.";
    for stream in [false, true] {
        mock.push(Behavior::text(leaky).with_chunks(20));
        let mut body = user("redact", "Who can help me?");
        body["stream"] = stream.into();
        let answer = chat(process, app, &body, &[]).await?;
        ensure!(answer.status == 200, "{}", answer.text);
        let content = answer.content()?;
        ensure!(
            content == "Reach our agent at [EMAIL] or [PHONE] today.",
            "stream={stream}: {content:?}"
        );
    }

    // Block: 400 with the kinds found (never the values), and nothing goes upstream.
    let before = mock.requests().len();
    let answer = chat(process, app, &user("block", &prompt), &[]).await?;
    ensure!(answer.status == 400, "{}", answer.text);
    ensure!(
        answer.error_code().as_deref() == Some("pii_detected"),
        "{}",
        answer.text
    );
    ensure!(
        !answer.text.contains(EMAIL) && !answer.text.contains("4111"),
        "{}",
        answer.text
    );
    ensure!(
        mock.requests().len() == before,
        "a blocked request went upstream"
    );

    // Detect-only: unchanged upstream, counted in metrics.
    let answer = chat(process, app, &user("detect", &prompt), &[]).await?;
    ensure!(answer.status == 200, "{}", answer.text);
    ensure!(received_text(&mock)? == prompt);
    let exposition = metrics(process).await?;
    for (labels, expected) in [
        (
            &[
                r#"route="demo/detect""#,
                r#"mode="detect-only""#,
                r#"entity="email""#,
            ][..],
            1.0,
        ),
        (
            &[r#"route="demo/redact""#, r#"direction="request""#][..],
            4.0,
        ),
        (
            &[r#"route="demo/redact""#, r#"direction="response""#][..],
            4.0,
        ),
        (&[r#"route="demo/block""#, r#"mode="block""#][..], 2.0),
    ] {
        let found = metric_sum(&exposition, "sluice_pii_findings_total", labels);
        ensure!(found == expected, "{labels:?}: {found} != {expected}");
    }
    Ok(())
}

#[tokio::test]
async fn guardrails_refuse_with_openai_errors_and_fill_in_the_cap() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let backend = openai_backend("openai", &mock, "");
    let manifests = [
        provider_secret(),
        route(
            "guarded",
            &[backend],
            "  aliases: [guarded-alias]\n  guardrails:\n    maxPromptTokens: 50\n    maxTokens: 100\n    blockedPatterns: [{name: codename, regex: '(?i)project\\s+nightingale'}]\n",
        ),
        key("app", "{}"),
        key("tight", "{guardrails: {maxTokens: 10}}"),
        key("denied", "{deniedModels: [guarded-alias]}"),
    ]
    .concat();
    let gateway = LocalGateway::start(&manifests, &[]).await?;
    let process = &gateway.process;
    let (app, tight, denied) = (
        gateway.key("demo/app")?,
        gateway.key("demo/tight")?,
        gateway.key("demo/denied")?,
    );
    let sent_max_tokens = |mock: &MockProvider| -> Option<u64> {
        let body = mock.last_request()?.body;
        body["max_completion_tokens"]
            .as_u64()
            .or(body["max_tokens"].as_u64())
    };

    // A request without max_tokens gets the cap (the lower one of route and key).
    let answer = chat(process, app, &user("guarded", "hello there"), &[]).await?;
    ensure!(answer.status == 200, "{}", answer.text);
    ensure!(sent_max_tokens(&mock) == Some(100));
    let answer = chat(process, tight, &user("guarded", "hello there"), &[]).await?;
    ensure!(answer.status == 200, "{}", answer.text);
    ensure!(sent_max_tokens(&mock) == Some(10));
    let upstream_calls = mock.requests().len();

    let mut too_many = user("guarded", "hello");
    too_many["max_tokens"] = 101.into();
    let long = "word ".repeat(300);
    let refusals = [
        (
            app,
            too_many,
            400,
            "max_tokens_too_high",
            Some("max_tokens"),
        ),
        (
            app,
            user("guarded", &long),
            400,
            "prompt_too_long",
            Some("messages"),
        ),
        (
            app,
            user("guarded", "What is the status of Project  Nightingale?"),
            400,
            "guardrail_blocked",
            Some("messages"),
        ),
        (
            denied,
            user("guarded", "hello"),
            403,
            "model_not_allowed",
            Some("model"),
        ),
    ];
    for (key, body, status, code, param) in refusals {
        let answer = chat(process, key, &body, &[]).await?;
        ensure!(answer.status == status, "{code}: {}", answer.text);
        let error = &answer.json()?["error"];
        ensure!(error["code"] == code, "{}", answer.text);
        ensure!(error["param"].as_str() == param, "{}", answer.text);
        ensure!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        ensure!(
            !answer.text.to_lowercase().contains("nightingale"),
            "the refusal echoes the request: {}",
            answer.text
        );
    }
    ensure!(
        mock.requests().len() == upstream_calls,
        "a refused request went upstream"
    );
    let exposition = metrics(process).await?;
    for class in [
        "max_tokens_too_high",
        "prompt_too_long",
        "blocked_pattern",
        "model_not_allowed",
    ] {
        let label = format!("class=\"{class}\"");
        ensure!(
            metric_sum(&exposition, "sluice_errors_total", &[&label]) == 1.0,
            "{class} not counted once"
        );
    }
    Ok(())
}

/// A loopback address where nothing listens: the in-region backend that is down.
fn closed_port_url() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}/v1"))
}

#[tokio::test]
async fn residency_never_leaves_the_allowed_regions_even_on_fallback() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let down = format!(
        "{{name: eu-down, provider: openai, model: gpt-4o-mini, endpoint: \"{}\", region: eu, credentialsRef: {{name: providers, key: key}}}}",
        closed_port_url()?
    );
    let up = openai_backend("us-up", &mock, ", region: us, priority: 1");
    let manifests = [
        provider_secret(),
        route(
            "eu-only",
            &[down.clone(), up.clone()],
            "  allowedRegions: [eu]\n",
        ),
        route("anywhere", &[down, up], ""),
        key("app", "{}"),
        key("eu-key", "{allowedRegions: [eu]}"),
    ]
    .concat();
    let gateway = LocalGateway::start(&manifests, &[]).await?;
    let process = &gateway.process;
    let (app, eu_key) = (gateway.key("demo/app")?, gateway.key("demo/eu-key")?);

    // Without a restriction the request falls back to the US backend.
    let answer = chat(process, app, &user("anywhere", "hi"), &[]).await?;
    ensure!(answer.status == 200, "{}", answer.text);
    ensure!(mock.requests().len() == 1);

    // Restricted by the route, or by the key: a clear 503, and the US backend never sees it.
    for (key, model) in [(app, "eu-only"), (eu_key, "anywhere"), (eu_key, "eu-only")] {
        for stream in [false, true] {
            let mut body = user(model, "hi");
            body["stream"] = stream.into();
            let answer = chat(process, key, &body, &[]).await?;
            ensure!(answer.status == 503, "{model}: {}", answer.text);
            ensure!(
                answer.error_code().as_deref() == Some("region_unavailable"),
                "{}",
                answer.text
            );
            let message = answer.json()?["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            ensure!(
                message.contains("(eu)") && message.contains("not sent to any other region"),
                "{message}"
            );
        }
    }
    ensure!(
        mock.requests().len() == 1,
        "a restricted request left the region"
    );
    Ok(())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test]
async fn a_slow_shadow_changes_neither_latency_nor_answer_and_splits_are_sticky() -> Result<()> {
    let primary = MockProvider::start().await?;
    primary.expect_api_key(PROVIDER_KEY);
    let shadow = MockProvider::start().await?;
    shadow.expect_api_key(PROVIDER_KEY);
    let shadow_latency = Duration::from_millis(1500);
    shadow.set_default(Behavior::text("SHADOW ANSWER").with_latency(shadow_latency));
    let backend = openai_backend("openai", &primary, "");
    let candidate = openai_backend("candidate", &shadow, "");
    let split = |name: &str| {
        format!(
            "{{name: {name}, provider: openai-compatible, model: {name}, endpoint: \"{}\", weight: 50, credentialsRef: {{name: providers, key: key}}}}",
            primary.openai_base_url()
        )
    };
    let manifests = [
        provider_secret(),
        route("plain", std::slice::from_ref(&backend), ""),
        route(
            "mirrored",
            &[backend],
            &format!("  shadow: {{percent: 100, backend: {candidate}}}\n"),
        ),
        route(
            "split",
            &[split("model-a"), split("model-b")],
            "  strategy: weighted\n  stickiness: {by: header, header: x-user-id}\n",
        ),
        key("app", "{}"),
    ]
    .concat();
    let gateway = LocalGateway::start(&manifests, &[]).await?;
    let (process, app) = (&gateway.process, gateway.key("demo/app")?);

    // Both ways in one run, interleaved so that any drift hits both alike.
    let rounds = 10;
    let (mut plain, mut mirrored) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (model, samples) in [("plain", &mut plain), ("mirrored", &mut mirrored)] {
            let text = format!("question {round}");
            let started = Instant::now();
            let answer = chat(
                process,
                app,
                &user(model, &text),
                &[("x-sluice-debug", "1")],
            )
            .await?;
            samples.push(started.elapsed());
            ensure!(answer.status == 200, "{}", answer.text);
            ensure!(answer.content()? == text, "{model}: {}", answer.text);
            ensure!(
                answer.header("x-sluice-backend") == Some("openai"),
                "{model}: answered by {:?}",
                answer.header("x-sluice-backend")
            );
        }
    }
    let (plain_p50, mirrored_p50) = (median(&mut plain), median(&mut mirrored));
    let mirrored_max = mirrored.iter().max().copied().unwrap_or_default();
    eprintln!(
        "client latency p50: without shadow {plain_p50:?}, with a {shadow_latency:?} shadow {mirrored_p50:?} (max {mirrored_max:?})"
    );
    ensure!(
        mirrored_max < shadow_latency / 2,
        "a client waited for the shadow: {mirrored:?}"
    );
    ensure!(
        mirrored_p50 < plain_p50 + Duration::from_millis(100),
        "shadow traffic slowed clients: {mirrored_p50:?} vs {plain_p50:?}"
    );

    // The copies did arrive, and are accounted on their own.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exposition = metrics(process).await?;
        let done = metric_sum(
            &exposition,
            "sluice_shadow_requests_total",
            &[r#"backend="candidate""#, r#"outcome="success""#],
        );
        if done == f64::from(rounds) {
            ensure!(
                metric_sum(
                    &exposition,
                    "sluice_requests_total",
                    &[r#"backend="candidate""#]
                ) == 0.0,
                "shadow requests were counted as client requests"
            );
            ensure!(
                metric_sum(
                    &exposition,
                    "sluice_shadow_cost_usd_total",
                    &[r#"backend="candidate""#]
                ) > 0.0
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {done} shadow requests finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(shadow.requests().len() == rounds as usize);
    let copy = shadow.last_request().context("no shadow request")?;
    ensure!(copy.body["messages"][0]["content"] == "question 9");

    // Sticky split: each user keeps its side; both sides get users.
    let mut sides = std::collections::BTreeSet::new();
    for user_id in 0..20 {
        let header = format!("user-{user_id}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let answer = chat(
                process,
                app,
                &user("split", "hi"),
                &[("x-user-id", header.as_str())],
            )
            .await?;
            ensure!(answer.status == 200, "{}", answer.text);
            let model = primary.last_request().context("no request")?.body["model"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            seen.insert(model);
        }
        ensure!(seen.len() == 1, "{header} moved between {seen:?}");
        sides.extend(seen);
    }
    ensure!(sides.len() == 2, "one side got every user: {sides:?}");
    gateway.stop()
}
