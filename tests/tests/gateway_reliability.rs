//! Reliability end to end: a gateway started in-process on compiled manifests, in front of two
//! fault-injecting mock providers on loopback. Chaos under concurrent load (one backend faulty in each
//! way the mock can be), the attempt bound counted at the mocks, circuit breaking and recovery seen in
//! the metrics, `Retry-After` on the same backend only, context-window fallback, hedging, timeouts,
//! client disconnects, late stream failures, and a graceful drain under load.

mod gateway_support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_crds::compile::compile;
use sluice_crds::manifests::parse_str;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_tests::mock::{Behavior, MockProvider, RetryAfter};

use gateway_support::GatewayProcess;

const APP_KEY: &str = "sk-sluice-reliability-app-key-0123456789abcdef";
const PROVIDER_KEY: &str = "sk-upstream-provider-key-reliability";
const MODEL: &str = "chat";

/// Retry settings shared by the routes below: fast backoff so tests stay short, the default budget.
const RETRY: &str =
    "retry: {attempts: 3, initialBackoff: 10ms, maxBackoff: 100ms, budgetPercent: 20}";
const TIMEOUTS: &str = "timeouts: {connect: 1s, firstByte: 1s, idle: 500ms, total: 5s}";
const BREAKER: &str = "circuitBreaker: {consecutiveFailures: 5, openFor: 1s}";

/// One backend of the route under test.
struct BackendSpec<'a> {
    name: &'a str,
    mock: &'a MockProvider,
    priority: u32,
    context_window: Option<u64>,
    /// Served as Azure OpenAI (whose 429s carry no reset hint) instead of OpenAI.
    azure: bool,
}

fn backend<'a>(name: &'a str, mock: &'a MockProvider, priority: u32) -> BackendSpec<'a> {
    BackendSpec {
        name,
        mock,
        priority,
        context_window: None,
        azure: false,
    }
}

/// Secrets, a virtual key and one route `chat` over `backends`, with `policies` (YAML lines) under its
/// spec.
fn manifests(backends: &[BackendSpec<'_>], policies: &[&str]) -> String {
    let mut route = String::new();
    for spec in backends {
        let window = spec
            .context_window
            .map(|window| format!(", contextWindow: {window}"))
            .unwrap_or_default();
        let upstream = if spec.azure {
            format!(
                "provider: azure-openai, model: gpt-4o, endpoint: \"{}\", azure: {{deployment: gpt4o}}",
                spec.mock.url()
            )
        } else {
            format!(
                "provider: openai, model: gpt-4o, endpoint: \"{}\"",
                spec.mock.openai_base_url()
            )
        };
        route.push_str(&format!(
            "    - {{name: {}, {upstream}, priority: {}{window}, credentialsRef: {{name: providers, key: key}}}}\n",
            spec.name, spec.priority,
        ));
    }
    let policies: String = policies.iter().map(|line| format!("  {line}\n")).collect();
    let credentials = sluice_tests::manifests::team_credentials(PROVIDER_KEY, APP_KEY);
    format!(
        r#"{credentials}
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: chat, namespace: team}}
spec:
  model: {MODEL}
  backends:
{route}{policies}"#
    )
}

/// A gateway in front of its mocks.
struct Rig {
    gateway: Gateway,
    client: reqwest::Client,
}

/// What a client saw for one request.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    took: Duration,
    retry_after: Option<String>,
}

impl Rig {
    async fn start(backends: &[BackendSpec<'_>], policies: &[&str]) -> Result<Self> {
        Self::start_with(backends, policies, |_| {}).await
    }

    async fn start_with(
        backends: &[BackendSpec<'_>],
        policies: &[&str],
        adjust: impl FnOnce(&mut GatewayOptions),
    ) -> Result<Self> {
        for spec in backends {
            spec.mock.expect_api_key(PROVIDER_KEY);
        }
        let text = manifests(backends, policies);
        let parsed = parse_str(std::path::Path::new("reliability.yaml"), &text)?;
        let compiled = compile(&parsed.inputs("default", chrono::Utc::now()));
        for (object, outcome) in &compiled.outcomes {
            ensure!(
                outcome.published(),
                "{object} was not compiled: {outcome:?}"
            );
        }
        let mut options = GatewayOptions::new("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?);
        adjust(&mut options);
        let gateway =
            Gateway::start(options, ConfigSource::Static(Box::new(compiled.snapshot))).await?;
        Ok(Self {
            gateway,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.gateway.addr())
    }

    async fn chat(&self, stream: bool) -> Result<Answer> {
        chat(&self.client, &self.url(), stream).await
    }

    /// The value of `family{backend="…"}` on `/metrics` (`None` when absent).
    async fn metric(&self, family: &str, backend: &str) -> Result<Option<f64>> {
        let text = reqwest::get(format!("http://{}/metrics", self.gateway.admin_addr()))
            .await?
            .text()
            .await?;
        Ok(metric_value(&text, family, backend))
    }

    async fn circuit_state(&self, backend: &str) -> Result<f64> {
        self.metric("sluice_backend_circuit_state", backend)
            .await?
            .with_context(|| format!("no circuit state for backend {backend}"))
    }
}

async fn chat(client: &reqwest::Client, url: &str, stream: bool) -> Result<Answer> {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(APP_KEY)
        .json(&json!({
            "model": MODEL,
            "stream": stream,
            "messages": [{"role": "user", "content": "say something reliable"}],
        }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    Ok(Answer {
        status,
        body,
        took: started.elapsed(),
        retry_after,
    })
}

fn metric_value(exposition: &str, family: &str, backend: &str) -> Option<f64> {
    let label = format!("backend=\"{backend}\"");
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A non-streaming answer that is a complete chat completion.
fn is_good_completion(answer: &Answer) -> bool {
    answer.status == 200
        && serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|body| {
                body["choices"][0]["message"]["content"]
                    .as_str()
                    .map(str::len)
            })
            .is_some_and(|len| len > 0)
}

/// Requests received by a mock (its own counter, so rejected and reset requests count too).
fn attempts_at(mock: &MockProvider) -> u64 {
    mock.stats().requests_total
}

/// The faults one backend injects in the chaos run, each against a route whose other backend is healthy.
fn faults() -> Vec<(&'static str, Behavior)> {
    vec![
        ("500", Behavior::status(500)),
        ("502", Behavior::status(502)),
        ("503", Behavior::status(503)),
        ("429 without Retry-After", Behavior::rate_limited()),
        (
            "429 with Retry-After",
            Behavior::rate_limited_retry_after(RetryAfter::Seconds(1)),
        ),
        (
            "latency past the first-byte timeout",
            Behavior::default().with_latency(Duration::from_millis(1_500)),
        ),
        ("connection reset", Behavior::reset()),
        ("reset mid-body", Behavior::reset_after_events(2)),
        ("error instead of an answer", Behavior::error_event_after(0)),
        ("malformed JSON", Behavior::malformed_json()),
        (
            "drip slower than the idle timeout",
            Behavior::default().with_drip(8, Duration::from_millis(800)),
        ),
        ("hang", Behavior::hang()),
    ]
}

/// Requests per fault, clients in parallel, and how many succeed before the fault starts (traffic is
/// already flowing when a backend breaks, as in production).
const REQUESTS_PER_FAULT: usize = 200;
const CONCURRENCY: usize = 16;
const HEALTHY_BEFORE_FAULT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_one_faulty_backend_in_each_way_keeps_clients_served() -> Result<()> {
    let mut total = 0usize;
    let mut failed = Vec::new();
    let mut report = Vec::new();
    for (fault, behavior) in faults() {
        let faulty = MockProvider::start().await?;
        let healthy = MockProvider::start().await?;
        let rig = Rig::start(
            &[
                backend("faulty", &faulty, 0),
                backend("healthy", &healthy, 1),
            ],
            &[RETRY, TIMEOUTS, BREAKER],
        )
        .await?;
        let rig = Arc::new(rig);
        let faulty = Arc::new(faulty);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clients = Vec::new();
        for _ in 0..CONCURRENCY {
            let (rig, faulty, next, behavior) =
                (rig.clone(), faulty.clone(), next.clone(), behavior.clone());
            clients.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if index >= REQUESTS_PER_FAULT {
                        return answers;
                    }
                    if index == HEALTHY_BEFORE_FAULT {
                        faulty.set_default(behavior.clone());
                    }
                    answers.push(rig.chat(false).await);
                }
            }));
        }
        let mut answers = Vec::new();
        for client in clients {
            answers.extend(client.await?);
        }
        let answers: Vec<Answer> = answers.into_iter().collect::<Result<_>>()?;
        ensure!(answers.len() == REQUESTS_PER_FAULT);
        let good = answers.iter().filter(|a| is_good_completion(a)).count();
        let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
        let attempts = attempts_at(&faulty) + attempts_at(&healthy);
        let breaker = rig.circuit_state("faulty").await?;
        report.push(format!(
            "{fault}: {good}/{REQUESTS_PER_FAULT} ok, {attempts} upstream attempts, slowest {slowest:?}, faulty breaker {breaker}"
        ));
        total += answers.len();
        failed.extend(
            answers
                .iter()
                .filter(|a| !is_good_completion(a))
                .map(|a| format!("{fault}: {} {}", a.status, a.body)),
        );
        // Attempt amplification, counted where it costs: at the providers.
        let bound = (1.0 + 0.20) * REQUESTS_PER_FAULT as f64;
        ensure!(
            attempts as f64 <= bound,
            "{fault}: {attempts} upstream attempts for {REQUESTS_PER_FAULT} requests exceed (1 + 20 %) × requests = {bound}\n{}",
            report.join("\n")
        );
        // No request waited past the route's total timeout (5 s) by more than scheduling slack.
        ensure!(
            slowest <= Duration::from_millis(5_500),
            "{fault}: a request took {slowest:?}, past the 5 s total timeout"
        );
        // The breaker of the faulty backend opened (2) or is probing (1); never still closed.
        ensure!(
            breaker >= 1.0,
            "{fault}: the faulty backend's breaker is still closed\n{}",
            report.join("\n")
        );
    }
    let success = 1.0 - failed.len() as f64 / total as f64;
    ensure!(
        success >= 0.999,
        "client-visible success {:.4} < 99.9 %:\n{}\n{}",
        success,
        failed.join("\n"),
        report.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_at_its_threshold_fails_fast_and_closes_after_recovery() -> Result<()> {
    let primary = MockProvider::start().await?;
    let fallback = MockProvider::start().await?;
    let rig = Rig::start(
        &[
            backend("primary", &primary, 0),
            backend("fallback", &fallback, 1),
        ],
        &[RETRY, TIMEOUTS, BREAKER],
    )
    .await?;
    ensure!(rig.circuit_state("primary").await? == 0.0, "starts closed");
    primary.set_default(Behavior::status(503));
    for _ in 0..10 {
        let answer = rig.chat(false).await?;
        ensure!(is_good_completion(&answer), "fallback answers: {answer:?}");
    }
    ensure!(
        attempts_at(&primary) == 5,
        "the breaker opens after exactly consecutiveFailures (5) failures; the primary saw {}",
        attempts_at(&primary)
    );
    ensure!(rig.circuit_state("primary").await? == 2.0, "open");
    ensure!(
        rig.metric("sluice_circuit_open_rejections_total", "primary")
            .await?
            .unwrap_or(0.0)
            >= 5.0,
        "requests while open were not sent to the primary"
    );

    // Both breakers open: fail fast with 503 and a Retry-After instead of waiting on dead backends.
    fallback.set_default(Behavior::status(503));
    for _ in 0..5 {
        rig.chat(false).await?;
    }
    ensure!(rig.circuit_state("fallback").await? == 2.0, "fallback open");
    let seen = attempts_at(&primary) + attempts_at(&fallback);
    let answer = rig.chat(false).await?;
    ensure!(
        answer.status == 503 && answer.body.contains("backends_unavailable"),
        "{answer:?}"
    );
    ensure!(answer.retry_after.is_some(), "no Retry-After: {answer:?}");
    ensure!(
        answer.took < Duration::from_millis(200),
        "not fast: {:?}",
        answer.took
    );
    ensure!(
        attempts_at(&primary) + attempts_at(&fallback) == seen,
        "an open breaker let an attempt through"
    );

    // Recovery: after openFor, one probe; its success closes the breaker.
    primary.set_default(Behavior::default());
    fallback.set_default(Behavior::default());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(rig.circuit_state("primary").await? == 0.0, "closed again");
    let before = attempts_at(&primary);
    rig.chat(false).await?;
    ensure!(
        attempts_at(&primary) == before + 1,
        "traffic is back on the primary"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_the_same_backend_only() -> Result<()> {
    // Alone on its route: the gateway waits out the provider's Retry-After, then retries there.
    let only = MockProvider::start().await?;
    let rig = Rig::start(&[backend("only", &only, 0)], &[RETRY, TIMEOUTS]).await?;
    only.push(Behavior::rate_limited_retry_after(RetryAfter::Seconds(1)));
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(attempts_at(&only) == 2, "one retry on the same backend");
    ensure!(
        answer.took >= Duration::from_millis(950),
        "Retry-After: 1 was not waited for: {:?}",
        answer.took
    );

    // An HTTP-date hint is honoured too.
    let date = SystemTime::now() + Duration::from_secs(2);
    only.push(Behavior::rate_limited_retry_after(RetryAfter::HttpDate(
        date,
    )));
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(
        answer.took >= Duration::from_millis(900),
        "the HTTP-date hint was not waited for: {:?}",
        answer.took
    );

    // A 429 without any hint (Azure sends none) does not loop on the backend: one attempt, and the
    // 429 goes back to the client.
    let azure = MockProvider::start().await?;
    let azure_rig = Rig::start(
        &[BackendSpec {
            azure: true,
            ..backend("azure", &azure, 0)
        }],
        &[RETRY, TIMEOUTS],
    )
    .await?;
    azure.push(Behavior::rate_limited());
    let answer = azure_rig.chat(false).await?;
    ensure!(answer.status == 429, "{answer:?}");
    ensure!(
        attempts_at(&azure) == 1,
        "a 429 without a retry hint was retried on the same backend"
    );

    // With a second backend, the hint of the first does not delay the second.
    let limited = MockProvider::start().await?;
    let spare = MockProvider::start().await?;
    let rig = Rig::start(
        &[backend("limited", &limited, 0), backend("spare", &spare, 1)],
        &[RETRY, TIMEOUTS],
    )
    .await?;
    limited.set_default(Behavior::rate_limited_retry_after(RetryAfter::Seconds(3)));
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(
        answer.took < Duration::from_millis(500),
        "the other backend was made to wait for the first one's Retry-After: {:?}",
        answer.took
    );
    ensure!(attempts_at(&limited) == 1 && attempts_at(&spare) == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_too_long_moves_to_the_backend_with_the_larger_context() -> Result<()> {
    let small = MockProvider::start().await?;
    let medium = MockProvider::start().await?;
    let large = MockProvider::start().await?;
    let with_window = |name, mock, priority, window| BackendSpec {
        context_window: Some(window),
        ..backend(name, mock, priority)
    };
    let rig = Rig::start(
        &[
            with_window("small", &small, 0, 8_000),
            with_window("medium", &medium, 1, 8_000),
            with_window("large", &large, 2, 200_000),
        ],
        &[RETRY, TIMEOUTS],
    )
    .await?;
    small.set_default(Behavior::context_length_exceeded());
    medium.set_default(Behavior::context_length_exceeded());
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(
        (
            attempts_at(&small),
            attempts_at(&medium),
            attempts_at(&large)
        ) == (1, 0, 1),
        "the same-sized backend must be skipped: small {}, medium {}, large {}",
        attempts_at(&small),
        attempts_at(&medium),
        attempts_at(&large)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_answers_for_a_slow_primary_and_the_loser_is_cancelled() -> Result<()> {
    let slow = MockProvider::start().await?;
    let fast = MockProvider::start().await?;
    let rig = Rig::start(
        &[backend("slow", &slow, 0), backend("fast", &fast, 1)],
        &[
            RETRY,
            "timeouts: {connect: 1s, firstByte: 5s, idle: 5s, total: 10s}",
            "hedge: {delay: 50ms, maxPercent: 100}",
        ],
    )
    .await?;
    slow.set_default(Behavior::default().with_latency(Duration::from_secs(2)));
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(
        answer.took < Duration::from_millis(1_000),
        "the hedge did not answer first: {:?}",
        answer.took
    );
    slow.wait_for_stats(|s| s.cancelled >= 1, Duration::from_secs(5))
        .await
        .map_err(|stats| anyhow::anyhow!("the losing attempt was not cancelled: {stats:?}"))?;
    ensure!(rig.metric("sluice_upstream_hedges_total", "fast").await? == Some(1.0));
    ensure!(
        rig.metric("sluice_upstream_hedge_wins_total", "fast")
            .await?
            == Some(1.0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_bounds_every_request() -> Result<()> {
    let first = MockProvider::start().await?;
    let second = MockProvider::start().await?;
    let rig = Rig::start(
        &[backend("first", &first, 0), backend("second", &second, 1)],
        &[
            RETRY,
            "timeouts: {connect: 1s, firstByte: 800ms, idle: 10s, total: 1s}",
        ],
    )
    .await?;
    first.set_default(Behavior::hang());
    second.set_default(Behavior::hang());
    let answers = futures::future::join_all((0..8).map(|_| rig.chat(false))).await;
    for answer in answers {
        let answer = answer?;
        ensure!(answer.status == 504, "{answer:?}");
        ensure!(
            answer.took >= Duration::from_millis(950) && answer.took < Duration::from_millis(1_500),
            "total timeout 1 s, took {:?}",
            answer.took
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_fail_over_before_the_first_byte_and_end_with_an_error_after_it() -> Result<()> {
    let primary = MockProvider::start().await?;
    let fallback = MockProvider::start().await?;
    let rig = Rig::start(
        &[
            backend("primary", &primary, 0),
            backend("fallback", &fallback, 1),
        ],
        &[RETRY, TIMEOUTS, BREAKER],
    )
    .await?;
    // An error as the first event of a 200 stream: nothing reached the client, so it fails over.
    primary.push(Behavior::error_event_after(0));
    let answer = rig.chat(true).await?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.body.contains("data: [DONE]") && !answer.body.contains("\"error\""),
        "the client should see one clean stream: {}",
        answer.body
    );
    ensure!(attempts_at(&primary) == 1 && attempts_at(&fallback) == 1);

    // Cut after some events: never re-sent; the stream ends with an error event. Each cut counts against
    // the primary's breaker, continuing the run of failures the error event above started: with a
    // threshold of five, the fourth cut opens it and the next stream goes to the fallback.
    primary.set_default(Behavior::reset_after_events(2).with_chunks(3));
    for _ in 0..4 {
        let answer = rig.chat(true).await?;
        ensure!(answer.status == 200, "{answer:?}");
        ensure!(
            answer.body.contains("\"error\"") && !answer.body.contains("data: [DONE]"),
            "a cut stream must end with an error event, not a fake success: {}",
            answer.body
        );
    }
    ensure!(attempts_at(&fallback) == 1, "a started stream was re-sent");
    ensure!(
        rig.circuit_state("primary").await? == 2.0,
        "late failures did not open the breaker"
    );
    let answer = rig.chat(true).await?;
    ensure!(
        answer.body.contains("data: [DONE]") && attempts_at(&fallback) == 2,
        "the fallback should serve once the primary is open: {}",
        answer.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_mid_stream_closes_the_upstream_request() -> Result<()> {
    let mock = MockProvider::start().await?;
    let rig = Rig::start(&[backend("only", &mock, 0)], &[RETRY, TIMEOUTS]).await?;
    mock.set_default(
        Behavior::generated(200)
            .with_chunks(100)
            .with_chunk_delay(Duration::from_millis(50)),
    );
    let response = rig
        .client
        .post(rig.url())
        .bearer_auth(APP_KEY)
        .json(&json!({"model": MODEL, "stream": true,
            "messages": [{"role": "user", "content": "a long answer please"}]}))
        .send()
        .await?;
    ensure!(response.status() == 200);
    let mut frames = response.bytes_stream();
    let first = frames.next().await.context("no first frame")??;
    ensure!(!first.is_empty());
    drop(frames);
    let stats = mock
        .wait_for_stats(|s| s.cancelled >= 1, Duration::from_secs(3))
        .await
        .map_err(|stats| anyhow::anyhow!("the provider never saw the cancel: {stats:?}"))?;
    ensure!(stats.streams_completed == 0, "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_finishes_every_stream() -> Result<()> {
    let mock = MockProvider::start().await?;
    let rig = Rig::start_with(
        &[backend("only", &mock, 0)],
        &[RETRY, TIMEOUTS],
        |options| {
            options.drain_delay = Duration::from_millis(300);
            options.drain_timeout = Duration::from_secs(10);
        },
    )
    .await?;
    // Streams of ~1.5 s each, well within the 10 s grace period.
    mock.set_default(
        Behavior::generated(30)
            .with_chunks(30)
            .with_chunk_delay(Duration::from_millis(50)),
    );
    let url = rig.url();
    let admin = rig.gateway.admin_addr();
    let mut streams = Vec::new();
    for _ in 0..24 {
        let (client, url) = (rig.client.clone(), url.clone());
        streams.push(tokio::spawn(async move { chat(&client, &url, true).await }));
    }
    mock.wait_for_stats(|s| s.streams_active >= 24, Duration::from_secs(5))
        .await
        .map_err(|stats| anyhow::anyhow!("the streams did not start: {stats:?}"))?;
    let Rig { gateway, .. } = rig;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = reqwest::get(format!("http://{admin}/readyz")).await?;
    ensure!(
        ready.status() == 503,
        "/readyz while draining: {}",
        ready.status()
    );
    let mut failed = Vec::new();
    for stream in streams {
        let answer = stream.await??;
        if answer.status != 200 || !answer.body.contains("data: [DONE]") {
            failed.push(answer);
        }
    }
    ensure!(
        failed.is_empty(),
        "streams failed during the drain: {failed:?}"
    );
    ensure!(
        shutdown.await?,
        "the drain did not complete within the grace period"
    );
    if reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok()
    {
        bail!("the gateway still accepts requests after shutdown");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_state_survives_a_reload_that_keeps_the_backend() -> Result<()> {
    let primary = MockProvider::start().await?;
    let fallback = MockProvider::start().await?;
    let backends = [
        backend("primary", &primary, 0),
        backend("fallback", &fallback, 1),
    ];
    let rig = Rig::start(&backends, &[RETRY, TIMEOUTS, BREAKER]).await?;
    primary.set_default(Behavior::status(500));
    for _ in 0..6 {
        rig.chat(false).await?;
    }
    ensure!(rig.circuit_state("primary").await? == 2.0);
    let seen = attempts_at(&primary);
    // The same backends with a longer total timeout: a new snapshot, the same upstreams.
    let text = manifests(
        &backends,
        &[
            RETRY,
            "timeouts: {connect: 1s, firstByte: 1s, idle: 500ms, total: 6s}",
            BREAKER,
        ],
    );
    let parsed = parse_str(std::path::Path::new("reload.yaml"), &text)?;
    let compiled = compile(&parsed.inputs("default", chrono::Utc::now()));
    rig.gateway
        .store()
        .apply(&compiled.snapshot, sluice_gateway::config::Source::Static)
        .map_err(anyhow::Error::msg)?;
    let answer = rig.chat(false).await?;
    ensure!(is_good_completion(&answer), "{answer:?}");
    ensure!(
        attempts_at(&primary) == seen,
        "the reload reset the open breaker: the primary was tried again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_gateway_process_without_failing_a_stream() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("route.yaml"),
        manifests(&[backend("only", &mock, 0)], &[RETRY, TIMEOUTS]),
    )?;
    let state = tempfile::tempdir()?;
    let state_file = state.path().join("keys.json");
    let mut gateway = GatewayProcess::spawn(&[
        "--local",
        dir.path().to_str().context("path")?,
        "--local-state",
        state_file.to_str().context("path")?,
        "--drain-delay",
        "500ms",
        "--drain-timeout",
        "10s",
    ])?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    mock.set_default(
        Behavior::generated(30)
            .with_chunks(30)
            .with_chunk_delay(Duration::from_millis(50)),
    );
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let mut streams = Vec::new();
    for _ in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        streams.push(tokio::spawn(async move { chat(&client, &url, true).await }));
    }
    mock.wait_for_stats(|s| s.streams_active >= 16, Duration::from_secs(10))
        .await
        .map_err(|stats| anyhow::anyhow!("the streams did not start: {stats:?}"))?;
    let before = gateway.readiness().await?;
    ensure!(
        before["ready"] == true,
        "not ready before SIGTERM: {before}"
    );
    let readyz = format!("http://{}/readyz", gateway.admin_addr);
    let stopped = tokio::task::spawn_blocking(move || {
        let status = gateway.terminate(Duration::from_secs(20));
        (status, gateway.logs())
    });
    let mut saw_not_ready = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Ok(response) = reqwest::get(&readyz).await
            && response.status() == 503
        {
            saw_not_ready = true;
            break;
        }
    }
    let mut failed = Vec::new();
    for stream in streams {
        let answer = stream.await??;
        if answer.status != 200 || !answer.body.contains("data: [DONE]") {
            failed.push(answer);
        }
    }
    let (status, logs) = stopped.await?;
    let status = status?;
    ensure!(saw_not_ready, "/readyz never said 503 during the drain");
    ensure!(
        failed.is_empty(),
        "streams failed during the drain: {failed:?}"
    );
    ensure!(status.success(), "exit {status}; log:\n{logs}");
    ensure!(
        logs.contains("\"drained\":true"),
        "the drain did not finish in time; log:\n{logs}"
    );
    Ok(())
}
