//! Metering in the `sluice-gateway` binary (local mode, mock provider): rate limits under concurrency,
//! a blocking budget, and exact usage accounting of streamed and plain responses as reported to a
//! usage endpoint that plays the operator (including resends after failures and the final report).

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use gateway_support::GatewayProcess;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use sluice_crds::usage::{UsageAck, UsageReport};
use sluice_tests::mock::{Behavior, MockProvider, Usage};

const PROVIDER_KEY: &str = "sk-upstream-limits-provider-key";

fn manifests(mock: &MockProvider, key_spec: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: providers, namespace: demo}}
stringData: {{key: {PROVIDER_KEY}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: chat, namespace: demo}}
spec:
  model: gpt-4o
  backends:
    - name: openai
      provider: openai
      model: gpt-4o
      endpoint: "{}"
      credentialsRef: {{name: providers, key: key}}
      pricing: {{inputPerMillion: 1000, outputPerMillion: 1000}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: demo}}
spec: {key_spec}
{extra}"#,
        mock.openai_base_url()
    )
}

/// Starts a local-mode gateway on `manifests` and returns it with the generated key.
async fn start(
    dir: &Path,
    manifests: &str,
    extra_args: &[&str],
) -> Result<(GatewayProcess, String)> {
    std::fs::write(dir.join("routes.yaml"), manifests)?;
    let state = dir.join("state.json");
    let mut args = vec![
        "--local",
        dir.to_str().context("path")?,
        "--local-state",
        state.to_str().context("path")?,
    ];
    args.extend_from_slice(extra_args);
    let gateway = GatewayProcess::spawn(&args)?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    let readiness = gateway.readiness().await?;
    ensure!(readiness["lastError"].is_null(), "{readiness}");
    let stored: Value = serde_json::from_slice(&std::fs::read(&state)?)?;
    let key = stored["keys"]["demo/app"]
        .as_str()
        .context("no generated key")?
        .to_owned();
    Ok((gateway, key))
}

async fn chat(
    client: &reqwest::Client,
    gateway: &GatewayProcess,
    key: &str,
    body: Value,
) -> Result<reqwest::Response> {
    Ok(client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?)
}

async fn metrics(gateway: &GatewayProcess) -> Result<String> {
    Ok(
        reqwest::get(format!("http://{}/metrics", gateway.admin_addr))
            .await?
            .text()
            .await?,
    )
}

/// The value of the first series whose line starts with `prefix`.
fn series(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn rate_limits_hold_under_concurrency() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    mock.set_default(Behavior::generated(40).with_latency(Duration::from_millis(20)));
    let dir = tempfile::tempdir()?;
    let tpm = 3_000u64;
    let (gateway, key) = start(
        dir.path(),
        &manifests(
            &mock,
            &format!("{{rateLimit: {{tokensPerMinute: {tpm}}}}}"),
            "",
        ),
        &[],
    )
    .await?;
    let client = reqwest::Client::new();
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "count to forty please"}]
    });
    // 16 concurrent clients, 12 requests each: far more than a minute's tokens.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, body, key) = (client.clone(), body.clone(), key.clone());
        let url = gateway.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..12 {
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let json: Value = response.json().await?;
                seen.push((status, headers, json));
            }
            anyhow::Ok(seen)
        }));
    }
    let mut admitted_tokens = 0u64;
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        for (status, headers, json) in task.await?? {
            match status {
                200 => {
                    ok += 1;
                    admitted_tokens += json["usage"]["total_tokens"].as_u64().context("usage")?;
                    ensure!(
                        headers.contains_key("x-ratelimit-remaining-tokens"),
                        "{headers:?}"
                    );
                    ensure!(headers["x-ratelimit-limit-tokens"] == tpm.to_string().as_str());
                }
                429 => {
                    refused += 1;
                    ensure!(json["error"]["code"] == "rate_limit_exceeded", "{json}");
                    ensure!(json["error"]["type"] == "tokens", "{json}");
                    let retry: u64 = headers["retry-after"].to_str()?.parse()?;
                    ensure!((1..=61).contains(&retry), "retry-after {retry}");
                    ensure!(
                        headers.contains_key("x-ratelimit-reset-tokens"),
                        "{headers:?}"
                    );
                }
                other => anyhow::bail!("unexpected status {other}: {json}"),
            }
        }
    }
    // One request reserves its prompt estimate plus max_tokens (30); reported usage is at most that.
    let one_reservation = 30 + 20;
    ensure!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    ensure!(
        admitted_tokens <= tpm + one_reservation,
        "admitted {admitted_tokens} tokens in a minute, limit {tpm}"
    );
    ensure!(
        admitted_tokens >= tpm / 2,
        "the limiter admitted only {admitted_tokens} of {tpm} tokens"
    );
    let text = metrics(&gateway).await?;
    ensure!(
        series(
            &text,
            r#"sluice_rate_limited_total{scope="key",limit="tokens"}"#
        ) == f64::from(refused),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_blocking_budget_refuses_once_spent() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    // 10 prompt + 10 completion tokens at $1,000 per million: 2 cents a request.
    mock.set_default(Behavior::text("a b c d e f g h i j").with_usage(Usage::new(10, 10)));
    let dir = tempfile::tempdir()?;
    let budget = r#"---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {name: small, namespace: demo}
spec: {limitUSD: 0.2, window: daily, action: block}
"#;
    let (gateway, key) = start(
        dir.path(),
        &manifests(&mock, "{budgetRefs: [{name: small}]}", budget),
        &[],
    )
    .await?;
    let client = reqwest::Client::new();
    let body = json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let mut served = 0;
    let refusal = loop {
        let response = chat(&client, &gateway, &key, body.clone()).await?;
        if response.status() == 429 {
            break response.json::<Value>().await?;
        }
        ensure!(response.status() == 200, "{}", response.status());
        served += 1;
        ensure!(served <= 20, "the budget never refused");
    };
    ensure!(refusal["error"]["code"] == "budget_exceeded", "{refusal}");
    ensure!(
        refusal["error"]["type"] == "insufficient_quota",
        "{refusal}"
    );
    // $0.20 at $0.02 a request, each reserving ≤ $0.02 more than it costs: at most 10, at least 9.
    ensure!((9..=10).contains(&served), "served {served}");
    let text = metrics(&gateway).await?;
    let spent = series(&text, r#"sluice_budget_spent_ratio{budget="demo/small"}"#);
    ensure!((0.9..=1.0 + 1e-9).contains(&spent), "spent ratio {spent}");
    // Still refused, and not sent upstream.
    let before = mock.requests().len();
    ensure!(chat(&client, &gateway, &key, body).await?.status() == 429);
    ensure!(mock.requests().len() == before);
    Ok(())
}

/// A usage endpoint that fails its first `fail_first` requests, then acknowledges everything.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<UsageReport>>>,
}

async fn collector(fail_first: u32) -> Result<Collector> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(fail_first));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (sink, failures) = (sink.clone(), failures.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (sink, failures) = (sink.clone(), failures.clone());
                        async move {
                            let bytes = request.into_body().collect().await?.to_bytes();
                            let report: UsageReport = serde_json::from_slice(&bytes)
                                .map_err(|e| anyhow::anyhow!("bad report: {e}"))?;
                            let fail = failures
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            let duplicate = {
                                let mut reports = sink.lock().unwrap_or_else(|e| e.into_inner());
                                let duplicate = reports.iter().any(|r: &UsageReport| {
                                    r.reporter == report.reporter && r.sequence == report.sequence
                                });
                                reports.push(report.clone());
                                duplicate
                            };
                            let response = if fail {
                                http::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::from_static(b"busy")))?
                            } else {
                                let ack = UsageAck {
                                    sequence: report.sequence,
                                    duplicate,
                                    budgets: vec![],
                                };
                                http::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(serde_json::to_vec(&ack)?)))?
                            };
                            anyhow::Ok(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Collector { addr, received })
}

// Several threads: the collector keeps serving while the test blocks on the gateway's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_plain_usage_is_reported_exactly_once() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    mock.set_default(Behavior::text("one two three four five six").with_usage(Usage::new(17, 6)));
    let collector = collector(3).await?;
    let claude = format!(
        r#"---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: claude, namespace: demo}}
spec:
  model: claude-sonnet-4-5
  backends:
    - name: anthropic
      provider: anthropic
      model: claude-sonnet-4-5
      endpoint: "{}"
      credentialsRef: {{name: providers, key: key}}
      pricing: {{inputPerMillion: 1000, outputPerMillion: 1000}}
"#,
        mock.url()
    );
    let endpoint = format!("http://{}", collector.addr);
    let dir = tempfile::tempdir()?;
    let (mut gateway, key) = start(
        dir.path(),
        &manifests(&mock, "{}", &claude),
        &[
            "--usage-endpoint",
            &endpoint,
            "--usage-flush-interval",
            "100ms",
            "--pod-name",
            "gw-test",
        ],
    )
    .await?;
    let client = reqwest::Client::new();
    let (plain, streamed) = (7u64, 9u64);
    for _ in 0..plain {
        let response = chat(
            &client,
            &gateway,
            &key,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await?;
        ensure!(response.status() == 200);
    }
    // Streams from both wire formats: OpenAI's final usage chunk, Anthropic's message_start/message_delta.
    for i in 0..streamed {
        let model = if i % 2 == 0 {
            "gpt-4o"
        } else {
            "claude-sonnet-4-5"
        };
        let response = chat(&client, &gateway, &key, json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await?;
        ensure!(response.status() == 200);
        let text = response.text().await?;
        ensure!(text.contains("[DONE]"), "{text}");
    }
    let requests = plain + streamed;
    let text = metrics(&gateway).await?;
    ensure!(
        series(
            &text,
            "sluice_tokens_total{route=\"demo/chat\",backend=\"openai\",provider=\"openai\",kind=\"input\"}"
        ) == ((plain + streamed.div_ceil(2)) * 17) as f64,
        "{text}"
    );
    // A stream the provider cuts before its usage chunk: metered with the tokenizer, marked estimated.
    mock.push(Behavior::reset_after_events(3));
    let cut = chat(&client, &gateway, &key, json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "tell me a long story"}]})).await?;
    ensure!(cut.status() == 200);
    let _ = cut.text().await;
    let status = gateway.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "gateway exited with {status}");

    let reports = collector
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ensure!(
        reports.len() > 3,
        "{} reports\nlog:\n{}",
        reports.len(),
        gateway.logs()
    );
    // Resent unchanged until acknowledged: the first three attempts carry one sequence and one body.
    let first = &reports[0];
    for resent in &reports[1..4] {
        ensure!(
            resent == first,
            "a resent report changed: {resent:?} vs {first:?}"
        );
    }
    ensure!(first.sequence == 1 && first.reporter.pod == "gw-test");
    let last = reports.last().context("no reports")?;
    ensure!(
        last.last,
        "the final report is not marked last: {:?}\nlog:\n{}",
        reports
            .iter()
            .map(|r| (r.sequence, r.last))
            .collect::<Vec<_>>(),
        gateway.logs()
    );
    // Sum each sequence once: nothing lost, nothing counted twice.
    let mut by_sequence: BTreeMap<u64, &UsageReport> = BTreeMap::new();
    for report in &reports {
        if let Some(previous) = by_sequence.insert(report.sequence, report) {
            ensure!(
                previous == report,
                "sequence {} was reused",
                report.sequence
            );
        }
    }
    let sequences: Vec<u64> = by_sequence.keys().copied().collect();
    ensure!(
        sequences == (1..=sequences.len() as u64).collect::<Vec<_>>(),
        "sequences have gaps: {sequences:?}"
    );
    let (mut counted, mut input, mut output, mut cost, mut estimated) = (0, 0, 0, 0, 0);
    for report in by_sequence.values() {
        for delta in &report.usage {
            ensure!(delta.key == "demo/app", "{delta:?}");
            counted += delta.requests;
            input += delta.input_tokens;
            output += delta.output_tokens;
            cost += delta.cost_nano_usd;
            estimated += delta.estimated_tokens;
        }
    }
    ensure!(
        counted == requests + 1,
        "reported {counted} of {} requests",
        requests + 1
    );
    // Exact figures for every request the provider reported; the cut stream's estimate on top.
    ensure!(estimated > 0, "the cut stream was not estimated");
    ensure!(
        input + output == requests * 23 + estimated,
        "{input} + {output} tokens, {estimated} estimated"
    );
    // A token costs $1,000 per million: 1,000,000 nano-dollars.
    ensure!(
        cost == (requests * 23 + estimated) * 1_000_000,
        "cost {cost}"
    );
    let health = by_sequence
        .values()
        .flat_map(|report| &report.backends)
        .map(|backend| backend.attempts)
        .sum::<u64>();
    ensure!(
        health == requests + 1,
        "backend health counted {health} attempts"
    );
    Ok(())
}
