//! End-to-end latency of the cache, PII redaction and shadow traffic through the release `sluice-gateway`
//! binary (local mode) in front of the wire-faithful mock provider, all on loopback, interleaved in one run:
//!
//! 1. cache hit (in memory and in Redis) against a miss that goes upstream, for three upstream latencies;
//! 2. redaction overhead: the same prompt on a route with and without `piiRedaction`, per KB of prompt;
//! 3. the client's latency with and without a slow shadow backend receiving a copy of every request.
//!
//! Run: `cargo bench -p sluice-tests --bench policy_latency` (prints a Markdown table). Without `--bench`
//! (as `cargo test --all-targets` runs it) it only says how to run it.

#[path = "../tests/gateway_support/mod.rs"]
mod gateway_support;
#[expect(
    dead_code,
    reason = "shared with the integration tests; the bench uses part of it"
)]
#[path = "../tests/policy_support/mod.rs"]
mod policy_support;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use policy_support::{LocalGateway, PROVIDER_KEY, chat_with, provider_secret};
use serde_json::{Value, json};
use sluice_tests::mock::{Behavior, MockProvider, Rule};

/// Requests per measured series (after warm-up).
const SAMPLES: usize = 200;
const WARM_UP: usize = 20;

fn route(name: &str, endpoint: &str, model: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  model: {name}\n  backends: [{{name: openai, provider: openai, model: {model}, endpoint: \"{endpoint}\", credentialsRef: {{name: providers, key: key}}}}]\n{extra}"
    )
}

fn manifests(primary: &MockProvider, shadow: &MockProvider) -> String {
    let endpoint = primary.openai_base_url();
    let mut text = provider_secret();
    for (delay, model) in [
        ("0ms", "upstream-0ms"),
        ("50ms", "upstream-50ms"),
        ("500ms", "upstream-500ms"),
    ] {
        text += &route(
            &format!("cached-{delay}"),
            &endpoint,
            model,
            "  cache: {ttl: 1h}\n",
        );
    }
    text += &route("plain", &endpoint, "upstream-0ms", "");
    text += &route(
        "redacted",
        &endpoint,
        "upstream-0ms",
        "  piiRedaction: {mode: redact, responses: true}\n",
    );
    text += &route(
        "mirrored",
        &endpoint,
        "upstream-0ms",
        &format!(
            "  shadow: {{percent: 100, backend: {{name: candidate, provider: openai, model: slow, endpoint: \"{}\", credentialsRef: {{name: providers, key: key}}}}}}\n",
            shadow.openai_base_url()
        ),
    );
    text + "---\napiVersion: sluice.dev/v1alpha1\nkind: VirtualKey\nmetadata: {name: bench, namespace: demo}\nspec: {}\n"
}

/// p50 and p99 of a series.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

async fn timed(
    client: &reqwest::Client,
    gateway: &gateway_support::GatewayProcess,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
    expect_cache: Option<&str>,
) -> Result<Duration> {
    let started = Instant::now();
    let answer = chat_with(client, gateway, key, body, headers).await?;
    let elapsed = started.elapsed();
    ensure!(answer.status == 200, "{}", answer.text);
    if let Some(expected) = expect_cache {
        ensure!(
            answer.header("x-sluice-cache") == Some(expected),
            "expected {expected}, got {:?}",
            answer.header("x-sluice-cache")
        );
    }
    Ok(elapsed)
}

/// One measured series: its name, the request, request headers and the `x-sluice-cache` it must get.
type Series<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>, Option<&'a str>);

/// Series measured round-robin (one request of each per round), so drift hits all alike.
async fn interleaved<'a>(
    client: &reqwest::Client,
    gateway: &gateway_support::GatewayProcess,
    key: &str,
    series: &[Series<'a>],
) -> Result<Vec<(&'a str, Duration, Duration)>> {
    let mut samples = vec![Vec::with_capacity(SAMPLES); series.len()];
    for round in 0..WARM_UP + SAMPLES {
        for (i, (_, body, headers, expect)) in series.iter().enumerate() {
            let elapsed = timed(client, gateway, key, body, headers, *expect).await?;
            if round >= WARM_UP {
                samples[i].push(elapsed);
            }
        }
    }
    Ok(series
        .iter()
        .zip(&mut samples)
        .map(|((name, ..), samples)| {
            let (p50, p99) = percentiles(samples);
            (*name, p50, p99)
        })
        .collect())
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32})
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis(dir: &std::path::Path) -> Result<(Redis, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let binary = std::env::var("SLUICE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server (scripts/tools.sh installs it)")?;
    let redis = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server did not listen");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((redis, format!("redis://127.0.0.1:{port}/")))
}

async fn run(out: &mut impl std::io::Write) -> Result<()> {
    let primary = MockProvider::start().await?;
    primary.expect_api_key(PROVIDER_KEY);
    for (model, delay) in [("upstream-50ms", 50), ("upstream-500ms", 500)] {
        primary.add_rule(
            Rule::new(Behavior::echo().with_latency(Duration::from_millis(delay)))
                .for_model(model)
                .always(),
        );
    }
    let shadow = MockProvider::start().await?;
    shadow.expect_api_key(PROVIDER_KEY);
    shadow.set_default(Behavior::echo().with_latency(Duration::from_millis(500)));
    let manifests = manifests(&primary, &shadow);
    let client = reqwest::Client::new();
    let redis_dir = tempfile::tempdir()?;
    let (_redis, redis_url) = start_redis(redis_dir.path()).await?;

    writeln!(out, "### Cache hit against upstream\n")?;
    writeln!(
        out,
        "| upstream | miss p50 | miss p99 | hit p50 (memory) | hit p99 (memory) | hit p50 (Redis) | hit p99 (Redis) |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    let memory = LocalGateway::start(&manifests, &[]).await?;
    let shared =
        LocalGateway::start(&manifests, &["--cache-redis-url", redis_url.as_str()]).await?;
    for delay in ["0ms", "50ms", "500ms"] {
        let model = format!("cached-{delay}");
        let hit = ask(&model, "a question asked again and again");
        let bypass = vec![("x-sluice-cache", "bypass")];
        let mut rows = Vec::new();
        for gateway in [&memory, &shared] {
            let key = gateway.key("demo/bench")?;
            timed(&client, &gateway.process, key, &hit, &[], None).await?;
            let series = [
                ("miss", hit.clone(), bypass.clone(), Some("bypass")),
                ("hit", hit.clone(), vec![], Some("hit")),
            ];
            rows.push(interleaved(&client, &gateway.process, key, &series).await?);
        }
        let (miss, hit_memory, hit_redis) = (rows[0][0], rows[0][1], rows[1][1]);
        writeln!(
            out,
            "| {delay} | {} | {} | {} | {} | {} | {} |",
            ms(miss.1),
            ms(miss.2),
            ms(hit_memory.1),
            ms(hit_memory.2),
            ms(hit_redis.1),
            ms(hit_redis.2)
        )?;
    }

    writeln!(out, "\n### Redaction overhead per KB of prompt\n")?;
    writeln!(
        out,
        "| prompt | without PII policy p50 | with `redact` p50 | added per KB |"
    )?;
    writeln!(out, "|---|---|---|---|")?;
    let key = memory.key("demo/bench")?;
    let clean = "Summarise the quarterly report for the leadership meeting on Thursday; revenue grew 12% year over year. ";
    let with_pii = "Please update my profile: email jane.doe@example.com, phone +44 20 7946 0958, card 4111 1111 1111 1111. ";
    for (kind, unit) in [("clean", clean), ("with PII", with_pii)] {
        for kb in [1usize, 16, 64] {
            let text = unit.repeat((kb * 1024).div_ceil(unit.len()));
            let series = [
                ("plain", ask("plain", &text), vec![], None),
                ("redacted", ask("redacted", &text), vec![], None),
            ];
            let result = interleaved(&client, &memory.process, key, &series).await?;
            let added = result[1].1.saturating_sub(result[0].1);
            writeln!(
                out,
                "| {kb} KB {kind} | {} | {} | {:.1} µs |",
                ms(result[0].1),
                ms(result[1].1),
                added.as_secs_f64() * 1e6 / kb as f64
            )?;
        }
    }

    writeln!(
        out,
        "\n### Client latency with a slow shadow backend (500 ms, every request mirrored)\n"
    )?;
    writeln!(out, "| route | p50 | p99 |")?;
    writeln!(out, "|---|---|---|")?;
    let series = [
        ("without shadow", ask("plain", "hello"), vec![], None),
        ("with shadow", ask("mirrored", "hello"), vec![], None),
    ];
    for (name, p50, p99) in interleaved(&client, &memory.process, key, &series).await? {
        writeln!(out, "| {name} | {} | {} |", ms(p50), ms(p99))?;
    }
    writeln!(
        out,
        "\nThe shadow backend received {} of {} copies; the others were shed because {} were already in flight.",
        shadow.requests().len(),
        WARM_UP + SAMPLES,
        sluice_gateway::shadow::MAX_IN_FLIGHT
    )?;
    Ok(())
}

fn main() -> Result<()> {
    if !std::env::args().any(|arg| arg == "--bench") {
        writeln!(
            std::io::stdout(),
            "policy_latency is a benchmark: cargo bench -p sluice-tests --bench policy_latency"
        )?;
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    runtime.block_on(run(&mut out))?;
    std::io::stdout().write_all(&out)?;
    Ok(())
}
