//! Measures the gateway's reliability machinery against fault-injecting mock providers on loopback:
//! client-visible success and attempt amplification per fault, p50/p99 latency with and without hedging
//! against a backend with a slow tail (both in one run), and time to failover. Prints a Markdown report.
//!
//! `cargo run --release -p sluice-tests --bin reliability-bench [-- --requests 1000]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Value, json};
use sluice_crds::compile::compile;
use sluice_crds::manifests::parse_str;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_tests::mock::{Behavior, MockProvider, RetryAfter, Rule};

const APP_KEY: &str = "sk-sluice-reliability-bench-key-0123456789ab";
const PROVIDER_KEY: &str = "sk-upstream-reliability-bench";
const RETRY: &str =
    "retry: {attempts: 3, initialBackoff: 10ms, maxBackoff: 100ms, budgetPercent: 20}";
const TIMEOUTS: &str = "timeouts: {connect: 1s, firstByte: 1s, idle: 500ms, total: 5s}";
const BREAKER: &str = "circuitBreaker: {consecutiveFailures: 5, openFor: 1s}";

#[derive(Debug, Parser)]
struct Args {
    /// Requests per fault in the chaos phase.
    #[arg(long, default_value_t = 1_000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per route in the hedging phase.
    #[arg(long, default_value_t = 2_000)]
    hedge_requests: usize,
}

/// One route `model` over `(name, mock, priority)` backends with `policies` (YAML lines under spec).
fn route(model: &str, backends: &[(&str, &MockProvider, u32)], policies: &[&str]) -> String {
    let mut text = format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {{name: {model}, namespace: bench}}\nspec:\n  model: {model}\n  backends:\n"
    );
    for (name, mock, priority) in backends {
        text.push_str(&format!(
            "    - {{name: {name}, provider: openai, model: gpt-4o, endpoint: \"{}\", priority: {priority}, credentialsRef: {{name: providers, key: key}}}}\n",
            mock.openai_base_url()
        ));
    }
    for line in policies {
        text.push_str(&format!("  {line}\n"));
    }
    text
}

async fn start_gateway(routes: &[String]) -> Result<Gateway> {
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: providers, namespace: bench}}\nstringData: {{key: {PROVIDER_KEY}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: app-key, namespace: bench}}\nstringData: {{key: {APP_KEY}}}\n---\napiVersion: sluice.dev/v1alpha1\nkind: VirtualKey\nmetadata: {{name: app, namespace: bench}}\nspec:\n  secretRef: {{name: app-key, key: key}}\n{}",
        routes.concat()
    );
    let parsed = parse_str(std::path::Path::new("bench.yaml"), &text)?;
    let compiled = compile(&parsed.inputs("default", chrono::Utc::now()));
    for (object, outcome) in &compiled.outcomes {
        ensure!(
            outcome.published(),
            "{object} was not compiled: {outcome:?}"
        );
    }
    let options = GatewayOptions::new("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?);
    Ok(Gateway::start(options, ConfigSource::Static(Box::new(compiled.snapshot))).await?)
}

async fn mock() -> Result<MockProvider> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    Ok(mock)
}

/// One request's outcome as the client saw it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ok: bool,
    took: Duration,
}

async fn chat(client: &reqwest::Client, url: &str, model: &str) -> Sample {
    let started = Instant::now();
    let ok = match client
        .post(url)
        .bearer_auth(APP_KEY)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
    {
        Ok(response) if response.status() == 200 => response
            .json::<Value>()
            .await
            .ok()
            .is_some_and(|body| body["choices"][0]["message"]["content"].is_string()),
        _ => false,
    };
    Sample {
        ok,
        took: started.elapsed(),
    }
}

/// Sends `requests` requests for `model` from `concurrency` clients; `at_index(i)` runs as request `i`
/// is about to be sent (to inject a fault mid-run).
async fn load(
    gateway: &Gateway,
    model: &str,
    requests: usize,
    concurrency: usize,
    at_index: Arc<dyn Fn(usize) + Send + Sync>,
) -> Vec<Sample> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let url = format!("http://{}/v1/chat/completions", gateway.addr());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, at_index, model) = (
            client.clone(),
            url.clone(),
            next.clone(),
            at_index.clone(),
            model.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= requests {
                    return samples;
                }
                at_index(index);
                samples.push(chat(&client, &url, &model).await);
            }
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap_or_default());
    }
    samples
}

fn quantile(samples: &[Sample], q: f64) -> Duration {
    let mut times: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    times.sort_unstable();
    let index = ((times.len() as f64 * q).ceil() as usize).saturating_sub(1);
    times.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1_000.0)
}

async fn circuit_state(gateway: &Gateway, backend: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://{}/metrics", gateway.admin_addr()))
        .await?
        .text()
        .await?;
    let label = format!("backend=\"{backend}\"");
    text.lines()
        .filter(|line| line.starts_with("sluice_backend_circuit_state{") && line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .context("no sluice_backend_circuit_state")
}

fn faults() -> Vec<(&'static str, Behavior)> {
    vec![
        ("500", Behavior::status(500)),
        ("502", Behavior::status(502)),
        ("503", Behavior::status(503)),
        ("429 without Retry-After", Behavior::rate_limited()),
        (
            "429 with Retry-After: 1",
            Behavior::rate_limited_retry_after(RetryAfter::Seconds(1)),
        ),
        (
            "latency 1.5 s (first-byte timeout 1 s)",
            Behavior::default().with_latency(Duration::from_millis(1_500)),
        ),
        ("connection reset", Behavior::reset()),
        ("reset mid-body", Behavior::reset_after_events(2)),
        ("error event / error status", Behavior::error_event_after(0)),
        ("malformed JSON", Behavior::malformed_json()),
        (
            "drip 8 B / 800 ms (idle timeout 500 ms)",
            Behavior::default().with_drip(8, Duration::from_millis(800)),
        ),
        ("hang", Behavior::hang()),
    ]
}

/// Chaos: per fault, a fresh gateway over a faulty primary and a healthy fallback; the fault starts
/// after a fifth of the requests.
async fn chaos(args: &Args, report: &mut String) -> Result<()> {
    report.push_str(&format!(
        "### Chaos: one faulty backend of two\n\n{} non-streaming requests per fault, {} concurrent clients, \
         priority failover (faulty primary, healthy fallback), fault injected after {} requests; \
         retries 3 attempts / budget 20 %, breaker 5 consecutive failures / open 1 s, timeouts connect 1 s, \
         first byte 1 s, idle 500 ms, total 5 s. Attempts are counted at the mocks.\n\n\
         | fault | success | attempts / request | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
        args.requests,
        args.concurrency,
        args.requests / 5
    ));
    let (mut all_ok, mut all, mut all_attempts) = (0usize, 0usize, 0u64);
    for (fault, behavior) in faults() {
        let faulty = Arc::new(mock().await?);
        let healthy = mock().await?;
        let gateway = start_gateway(&[route(
            "chat",
            &[("faulty", &faulty, 0), ("healthy", &healthy, 1)],
            &[RETRY, TIMEOUTS, BREAKER],
        )])
        .await?;
        let switch_at = args.requests / 5;
        let injector = faulty.clone();
        let samples = load(
            &gateway,
            "chat",
            args.requests,
            args.concurrency,
            Arc::new(move |index| {
                if index == switch_at {
                    injector.set_default(behavior.clone());
                }
            }),
        )
        .await;
        let ok = samples.iter().filter(|s| s.ok).count();
        let attempts = faulty.stats().requests_total + healthy.stats().requests_total;
        all_ok += ok;
        all += samples.len();
        all_attempts += attempts;
        report.push_str(&format!(
            "| {fault} | {:.2} % | {:.3} | {} | {} | {} |\n",
            100.0 * ok as f64 / samples.len() as f64,
            attempts as f64 / samples.len() as f64,
            ms(quantile(&samples, 0.5)),
            ms(quantile(&samples, 0.99)),
            ms(quantile(&samples, 1.0)),
        ));
        eprintln!("chaos {fault}: {ok}/{} ok", samples.len());
        gateway.shutdown().await;
    }
    report.push_str(&format!(
        "| **all** | **{:.3} %** | **{:.3}** | | | |\n\n",
        100.0 * all_ok as f64 / all as f64,
        all_attempts as f64 / all as f64
    ));
    Ok(())
}

/// Scripts `mock` with a slow tail: every `period`-th request (deterministic, so both routes see the
/// same tail) takes `slow`, the others `fast`.
fn slow_tail(mock: &MockProvider, requests: usize, period: usize, fast: Duration, slow: Duration) {
    for index in 0..requests {
        let latency = if index % period == period - 1 {
            slow
        } else {
            fast
        };
        mock.add_rule(Rule::new(Behavior::default().with_latency(latency)));
    }
    mock.set_default(Behavior::default().with_latency(fast));
}

/// Hedging: two routes over identical backend pairs (a primary with a slow tail, a steady secondary),
/// one hedged, one not, measured in the same run.
async fn hedging(args: &Args, report: &mut String) -> Result<()> {
    let (fast, slow, period) = (Duration::from_millis(20), Duration::from_millis(600), 40);
    let plain_primary = mock().await?;
    let plain_secondary = mock().await?;
    let hedged_primary = mock().await?;
    let hedged_secondary = mock().await?;
    let requests = args.hedge_requests;
    slow_tail(&plain_primary, requests, period, fast, slow);
    slow_tail(&hedged_primary, requests, period, fast, slow);
    for secondary in [&plain_secondary, &hedged_secondary] {
        secondary.set_default(Behavior::default().with_latency(fast));
    }
    let policies = [
        RETRY,
        "timeouts: {connect: 1s, firstByte: 5s, idle: 5s, total: 10s}",
        BREAKER,
    ];
    let hedged_policies = [
        policies[0],
        policies[1],
        policies[2],
        "hedge: {delay: p95, maxPercent: 10}",
    ];
    let gateway = start_gateway(&[
        route(
            "plain",
            &[
                ("primary", &plain_primary, 0),
                ("secondary", &plain_secondary, 1),
            ],
            &policies,
        ),
        route(
            "hedged",
            &[
                ("primary", &hedged_primary, 0),
                ("secondary", &hedged_secondary, 1),
            ],
            &hedged_policies,
        ),
    ])
    .await?;
    let concurrency = args.concurrency.min(8);
    let none: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(|_| {});
    let plain = load(&gateway, "plain", requests, concurrency, none.clone()).await;
    let hedged = load(&gateway, "hedged", requests, concurrency, none).await;
    let extra = |primary: &MockProvider, secondary: &MockProvider, samples: &[Sample]| {
        let attempts = primary.stats().requests_total + secondary.stats().requests_total;
        100.0 * (attempts as f64 / samples.len() as f64 - 1.0)
    };
    report.push_str(&format!(
        "### Hedging against a slow tail\n\n{requests} non-streaming requests per route, {concurrency} concurrent clients. \
         Primary: {} ms, every {period}th request {} ms; secondary {} ms. The hedged route uses \
         `hedge: {{delay: p95, maxPercent: 10}}`.\n\n\
         | route | success | p50 ms | p99 ms | p99.9 ms | extra attempts |\n|---|---|---|---|---|---|\n",
        fast.as_millis(),
        slow.as_millis(),
        fast.as_millis()
    ));
    for (name, samples, primary, secondary) in [
        ("no hedging", &plain, &plain_primary, &plain_secondary),
        ("hedged (p95)", &hedged, &hedged_primary, &hedged_secondary),
    ] {
        report.push_str(&format!(
            "| {name} | {:.2} % | {} | {} | {} | {:.1} % |\n",
            100.0 * samples.iter().filter(|s| s.ok).count() as f64 / samples.len() as f64,
            ms(quantile(samples, 0.5)),
            ms(quantile(samples, 0.99)),
            ms(quantile(samples, 0.999)),
            extra(primary, secondary, samples),
        ));
    }
    report.push('\n');
    gateway.shutdown().await;
    Ok(())
}

/// Time to failover: steady load on a healthy primary; at t0 it breaks. Reported: time until its breaker
/// opens (seen on `/metrics`), requests failed, and the slowest request around the switch.
async fn failover(report: &mut String) -> Result<()> {
    report.push_str(
        "### Time to failover\n\nSteady load (8 clients) on a healthy primary; at t0 the primary breaks. \
         Time until its breaker is open on `/metrics`, client-visible failures, and the slowest request \
         in the 2 s after t0.\n\n| fault | breaker open after ms | failed requests | slowest request ms |\n|---|---|---|---|\n",
    );
    for (fault, behavior) in [
        ("503", Behavior::status(503)),
        ("connection reset", Behavior::reset()),
        ("hang (first-byte timeout 1 s)", Behavior::hang()),
    ] {
        let primary = Arc::new(mock().await?);
        let fallback = mock().await?;
        let gateway = Arc::new(
            start_gateway(&[route(
                "chat",
                &[("primary", &primary, 0), ("fallback", &fallback, 1)],
                &[RETRY, TIMEOUTS, BREAKER],
            )])
            .await?,
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let client = reqwest::Client::new();
        let url = format!("http://{}/v1/chat/completions", gateway.addr());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let sent = started.elapsed();
                    samples.push((sent, chat(&client, &url, "chat").await));
                }
                samples
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = started.elapsed();
        primary.set_default(behavior);
        let opened = loop {
            if circuit_state(&gateway, "primary").await? >= 2.0 {
                break started.elapsed() - t0;
            }
            if started.elapsed() - t0 > Duration::from_secs(10) {
                anyhow::bail!("{fault}: the breaker never opened");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::SeqCst);
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.unwrap_or_default());
        }
        let failed = samples.iter().filter(|(_, s)| !s.ok).count();
        let slowest = samples
            .iter()
            .filter(|(sent, sample)| {
                *sent + sample.took >= t0 && *sent <= t0 + Duration::from_secs(2)
            })
            .map(|(_, sample)| sample.took)
            .max()
            .unwrap_or_default();
        report.push_str(&format!(
            "| {fault} | {} | {failed} of {} | {} |\n",
            ms(opened),
            samples.len(),
            ms(slowest)
        ));
        eprintln!("failover {fault}: open after {opened:?}");
        if let Ok(gateway) = Arc::try_unwrap(gateway) {
            gateway.shutdown().await;
        }
    }
    report.push('\n');
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut report = String::from("## Reliability results\n\n");
    chaos(&args, &mut report).await?;
    hedging(&args, &mut report).await?;
    failover(&mut report).await?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.as_bytes())?;
    Ok(())
}
