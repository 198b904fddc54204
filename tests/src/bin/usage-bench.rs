//! Measures metering and budgets end to end against a real kube-apiserver and prints a Markdown report:
//!
//! 1. **Ingest** — simulated gateways post usage reports (the real protocol over HTTP) carrying a given
//!    request rate for a while: accounting error (status vs. what was reported), status-update lag
//!    (acknowledgement → `Budget.status` shows it, p50/p95), and API-server writes (ledger writes,
//!    status patches, Events) per second and per 1,000 requests/s of traffic.
//! 2. **Gateways** (`--gateway-bin`) — real `sluice-gateway` processes in front of the mock provider:
//!    overshoot of three gateways under concurrent load against one budget, and the usage a `kill -9`
//!    of a gateway loses.
//!
//! `scripts/bench-usage.sh` builds the binaries and runs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::Utc;
use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sluice_crds::conditions::READY;
use sluice_crds::usage::{NanoUsd, UsageDelta, usd};
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use sluice_operator::usage::ShiftedClock;
use sluice_tests::harness::{
    ControlPlane, EmbeddedOperator, ReportingGateway, TestNamespace, TestReporter,
    free_loopback_port, install_crds, server_side_apply as apply, usage_operator_settings,
    wait_for,
};
use sluice_tests::mock::{MockProvider, Outcome};

#[derive(Debug, Parser)]
struct Args {
    /// Simulated gateways in the ingest phase.
    #[arg(long, default_value_t = 3)]
    gateways: usize,
    /// Requests per second the simulated gateways report, together.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Length of the ingest phase, seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Flush interval of the simulated gateways, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    flush_ms: u64,
    /// Virtual keys and routes the traffic is spread over.
    #[arg(long, default_value_t = 50)]
    keys: usize,
    #[arg(long, default_value_t = 5)]
    routes: usize,
    /// The `sluice-gateway` binary for the gateway phase; skipped when absent.
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Skip the ingest phase (only the gateway phase).
    #[arg(long)]
    skip_ingest: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let client = ControlPlane::shared()?.admin_client().await?;
        install_crds(&client).await?;
        let mut report = String::from("# Metering and budgets\n\n");
        if !args.skip_ingest {
            report.push_str(&ingest(&client, &args).await?);
        }
        if let Some(binary) = &args.gateway_bin {
            report.push_str(&overshoot(&client, binary).await?);
            report.push_str(&kill_loss(&client, binary).await?);
        }
        Ok::<_, anyhow::Error>(report)
    })?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.as_bytes())?;
    Ok(())
}

/// Sum of every sample of a metric family (all label sets), 0 when absent.
async fn metric_sum(operator: &EmbeddedOperator, family: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://{}/metrics", operator.metrics_addr))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(family))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn wait_budget_ready(client: &Client, ns: &str, name: &str) -> Result<()> {
    let budgets: Api<Budget> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the Budget to be Ready",
        Duration::from_secs(60),
        || async {
            let budget = budgets.get(name).await?;
            Ok(budget
                .status
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == READY && c.status == "True")
                })
                .then_some(()))
        },
    )
    .await
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1_000.0)
}

/// Phase 1: simulated gateways over the real protocol.
async fn ingest(client: &Client, args: &Args) -> Result<String> {
    let namespace = TestNamespace::new(client, "usage-bench").await?;
    let ns = namespace.name().to_owned();
    apply::<Secret>(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "providers", "namespace": ns}, "stringData": {"key": "sk-upstream-bench"}})).await?;
    for r in 0..args.routes {
        apply::<LLMRoute>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
            "metadata": {"name": format!("r{r}"), "namespace": ns},
            "spec": {"gateway": ns, "model": format!("m{r}"), "backends": [{"name": "a", "provider": "openai", "model": "gpt-4o-mini", "credentialsRef": {"name": "providers", "key": "key"}}]}})).await?;
    }
    for k in 0..args.keys {
        apply::<VirtualKey>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "VirtualKey",
            "metadata": {"name": format!("k{k}"), "namespace": ns}, "spec": {"gateway": ns, "budgetRefs": [{"name": "monthly"}]}})).await?;
    }
    apply::<Budget>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "monthly", "namespace": ns},
        "spec": {"gateway": ns, "limitUSD": 1_000_000.0, "window": "monthly", "timeZone": "UTC", "thresholds": [50, 80, 100]}})).await?;
    let operator = EmbeddedOperator::start(
        usage_operator_settings(&ns, &ns, "usage-bench"),
        Arc::new(ShiftedClock::new()),
    )?;
    wait_budget_ready(client, &ns, "monthly").await?;
    // Let the first status pass over every key settle before counting writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_before = metric_sum(&operator, "sluice_operator_usage_ledger_writes_total").await?
        + metric_sum(&operator, "sluice_operator_status_patches_total").await?;
    let patches_before = metric_sum(&operator, "sluice_operator_status_patches_total").await?;
    let ledger_before = metric_sum(&operator, "sluice_operator_usage_ledger_writes_total").await?;

    // The poller samples Budget.status every 50 ms for the lag.
    let budgets: Api<Budget> = Api::namespaced(client.clone(), &ns);
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = {
        let (budgets, stop) = (budgets.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples: Vec<(Instant, f64)> = Vec::new();
            while !stop.is_cancelled() {
                if let Ok(budget) = budgets.get("monthly").await {
                    samples.push((Instant::now(), budget.status.unwrap_or_default().spent_usd));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };

    let started = Instant::now();
    let flush = Duration::from_millis(args.flush_ms);
    let per_report = (args.rate * args.flush_ms / 1_000 / args.gateways as u64).max(1);
    let mut tasks = Vec::new();
    for g in 0..args.gateways {
        let (ns, url, keys, routes, seconds) = (
            ns.clone(),
            operator.usage_url(),
            args.keys,
            args.routes,
            args.seconds,
        );
        tasks.push(tokio::spawn(async move {
            let mut reporter = TestReporter::new(&format!("bench-{g}"), &ns);
            let mut rng = rand::rngs::StdRng::seed_from_u64(g as u64);
            let mut acks: Vec<(Instant, NanoUsd)> = Vec::new();
            let mut sent = (0u64, 0u64, 0u64, 0u64);
            let mut tick = tokio::time::interval(flush);
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let mut deltas: BTreeMap<(usize, usize), UsageDelta> = BTreeMap::new();
                for _ in 0..per_report {
                    let (k, r) = (rng.random_range(0..keys), rng.random_range(0..routes));
                    let (input, output) =
                        (rng.random_range(50..2_000u64), rng.random_range(10..800u64));
                    let delta = deltas.entry((k, r)).or_insert_with(|| UsageDelta {
                        key: format!("{ns}/k{k}"),
                        route: format!("{ns}/r{r}"),
                        budgets: vec![format!("{ns}/monthly")],
                        last_used: Utc::now(),
                        ..UsageDelta::default()
                    });
                    delta.requests += 1;
                    delta.input_tokens += input;
                    delta.output_tokens += output;
                    delta.cost_nano_usd += input * 150 + output * 600;
                }
                let usage: Vec<UsageDelta> = deltas.into_values().collect();
                for delta in &usage {
                    sent.0 += delta.requests;
                    sent.1 += delta.input_tokens;
                    sent.2 += delta.output_tokens;
                    sent.3 += delta.cost_nano_usd;
                }
                let report = reporter.report(usage, vec![], vec![format!("{ns}/monthly")]);
                let ack = reporter
                    .send(&url, &report, Duration::from_secs(30))
                    .await?;
                let spent = ack.budgets.first().map_or(0, |b| b.spent_nano_usd);
                acks.push((Instant::now(), spent));
            }
            Ok::<_, anyhow::Error>((acks, sent))
        }));
    }
    let mut acks = Vec::new();
    let mut sent = (0u64, 0u64, 0u64, 0u64);
    for task in tasks {
        let (mut a, s) = task.await??;
        acks.append(&mut a);
        sent = (sent.0 + s.0, sent.1 + s.1, sent.2 + s.2, sent.3 + s.3);
    }
    let elapsed = started.elapsed();
    // Status settles on the final figures.
    let settled = wait_for(
        "status to show every report",
        Duration::from_secs(60),
        || async {
            let spent = budgets
                .get("monthly")
                .await?
                .status
                .unwrap_or_default()
                .spent_usd;
            Ok((spent >= usd(sent.3)).then_some(spent))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let samples = poller.await?;
    let writes = metric_sum(&operator, "sluice_operator_usage_ledger_writes_total").await?
        + metric_sum(&operator, "sluice_operator_status_patches_total").await?
        - writes_before;
    let patches =
        metric_sum(&operator, "sluice_operator_status_patches_total").await? - patches_before;
    let ledger =
        metric_sum(&operator, "sluice_operator_usage_ledger_writes_total").await? - ledger_before;
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| r == "ThresholdCrossed" || r == "BudgetExceeded")
        })
        .count();

    // Accounting: the budget and the sum over keys against what was reported.
    let keys: Api<VirtualKey> = Api::namespaced(client.clone(), &ns);
    let mut key_totals = (0i64, 0i64, 0i64, 0f64);
    for key in keys.list(&ListParams::default()).await?.items {
        let u = key.status.and_then(|s| s.usage).unwrap_or_default();
        key_totals = (
            key_totals.0 + u.requests,
            key_totals.1 + u.input_tokens,
            key_totals.2 + u.output_tokens,
            key_totals.3 + u.cost_usd,
        );
    }
    let budget_spent = settled.unwrap_or_default();
    let budget_error = (budget_spent - usd(sent.3)).abs() / usd(sent.3).max(1e-12);
    let key_error = (key_totals.3 - usd(sent.3)).abs() / usd(sent.3).max(1e-12);
    let token_error = (key_totals.1 + key_totals.2 - (sent.1 + sent.2) as i64).abs();

    // Lag: from each acknowledgement to the first status sample that includes it.
    let lags: Vec<Duration> = acks
        .iter()
        .filter_map(|(at, spent)| {
            let target = usd(*spent);
            samples
                .iter()
                .find(|(sampled, shown)| sampled >= at && *shown >= target - 1e-12)
                .map(|(sampled, _)| sampled.duration_since(*at))
        })
        .collect();
    let seconds = elapsed.as_secs_f64();
    let rate = sent.0 as f64 / seconds;
    let writes_per_second = writes / seconds;
    drop(operator);
    drop(namespace);
    Ok(format!(
        "## Ingest: {} simulated gateways, {:.0} requests/s for {:.0} s, flush every {} ms, {} keys × {} routes\n\n\
         | figure | value |\n|---|---|\n\
         | requests reported | {} ({} reports) |\n\
         | accounting error: Budget.status.spentUSD vs reported | {:.2e} (relative) |\n\
         | accounting error: Σ VirtualKey.status.usage cost vs reported | {:.2e} (relative); tokens off by {} |\n\
         | status-update lag (ack → Budget.status), p50 / p95 / max | {} / {} / {} ({} samples) |\n\
         | ledger writes | {:.0} ({:.2}/s) |\n\
         | status patches | {:.0} ({:.2}/s) |\n\
         | threshold Events | {} |\n\
         | **API writes per second** | {:.2} |\n\
         | **API writes per 1,000 requests/s** | {:.2} |\n\n",
        args.gateways,
        rate,
        seconds,
        args.flush_ms,
        args.keys,
        args.routes,
        sent.0,
        acks.len(),
        budget_error,
        key_error,
        token_error,
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.95)),
        ms(percentile(&lags, 1.0)),
        lags.len(),
        ledger,
        ledger / seconds,
        patches,
        patches / seconds,
        events,
        writes_per_second,
        writes_per_second * 1_000.0 / rate.max(1.0),
    ))
}

const APP_KEY: &str = "sk-sluice-usage-bench-app-0123456789abcdefghijkl";
const INPUT_NANO: u64 = 1_000;
const OUTPUT_NANO: u64 = 2_000;

struct Cluster {
    namespace: TestNamespace,
    mock: MockProvider,
    _operator: EmbeddedOperator,
    url: String,
}

/// A namespace with one priced route on the mock, the app key, a budget of `limit_usd`, and an operator.
async fn cluster(client: &Client, prefix: &str, limit_usd: f64) -> Result<Cluster> {
    let namespace = TestNamespace::new(client, prefix).await?;
    let ns = namespace.name().to_owned();
    let mock = MockProvider::start().await?;
    apply::<Secret>(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "providers", "namespace": ns}, "stringData": {"key": "sk-upstream-bench"}})).await?;
    apply::<Secret>(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": ns}, "stringData": {"key": APP_KEY}})).await?;
    apply::<LLMRoute>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {"gateway": ns, "model": "chat", "backends": [{"name": "openai", "provider": "openai", "model": "gpt-4o-mini",
            "endpoint": mock.openai_base_url(), "pricing": {"inputPerMillion": 1.0, "outputPerMillion": 2.0},
            "credentialsRef": {"name": "providers", "key": "key"}}]}})).await?;
    apply::<VirtualKey>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "VirtualKey",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"gateway": ns, "secretRef": {"name": "app", "key": "key"}, "budgetRefs": [{"name": "monthly"}]}})).await?;
    apply::<Budget>(
        client,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "monthly", "namespace": ns},
        "spec": {"gateway": ns, "limitUSD": limit_usd, "window": "monthly", "timeZone": "UTC"}}),
    )
    .await?;
    let port = free_loopback_port()?;
    let mut settings = usage_operator_settings(&ns, &ns, "usage-bench");
    settings.usage_addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Killed gateways' grants are reclaimed after 5 s (default 30 s) so kills a few seconds apart do
    // not starve the replacements.
    settings.usage_grant_ttl = Duration::from_secs(5);
    let operator = EmbeddedOperator::start(settings, Arc::new(ShiftedClock::new()))?;
    wait_budget_ready(client, &ns, "monthly").await?;
    Ok(Cluster {
        namespace,
        mock,
        _operator: operator,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn chat(http: &reqwest::Client, gateway: SocketAddr, stream: bool) -> Result<u16> {
    let mut body = json!({"model": "chat", "max_tokens": 40, "stream": stream,
        "messages": [{"role": "user", "content": "count the words in this short sentence please"}]});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    let response = http
        .post(format!("http://{gateway}/v1/chat/completions"))
        .bearer_auth(APP_KEY)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

async fn wait_serving(http: &reqwest::Client, gateway: &ReportingGateway) -> Result<()> {
    wait_for("the gateway to serve", Duration::from_secs(60), || async {
        Ok((chat(http, gateway.addr, false).await? == 200).then_some(()))
    })
    .await
}

/// Cost and requests the mock reported in successful answers.
fn upstream(mock: &MockProvider) -> (u64, NanoUsd) {
    mock.requests()
        .iter()
        .filter_map(|r| match (r.outcome, &r.usage) {
            (Outcome::Status(200), Some(u)) => {
                Some(u.prompt_tokens * INPUT_NANO + u.completion_tokens * OUTPUT_NANO)
            }
            _ => None,
        })
        .fold((0, 0), |(n, cost), c| (n + 1, cost + c))
}

/// Phase 2a: three gateways, twelve clients, one budget, until every client is refused.
async fn overshoot(client: &Client, binary: &std::path::Path) -> Result<String> {
    let limit_usd = 0.05;
    let cluster = cluster(client, "usage-bench-budget", limit_usd).await?;
    let ns = cluster.namespace.name().to_owned();
    let http = reqwest::Client::new();
    let gateways: Vec<ReportingGateway> = (0..3)
        .map(|g| ReportingGateway::spawn(binary, &ns, &ns, &cluster.url, "1s", &format!("gw-{g}")))
        .collect::<Result<_>>()?;
    for gateway in &gateways {
        wait_serving(&http, gateway).await?;
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for (i, gateway) in gateways.iter().enumerate() {
        for c in 0..4 {
            let (http, addr) = (http.clone(), gateway.addr);
            clients.push(tokio::spawn(async move {
                let mut in_a_row = 0;
                let mut admitted = 0u64;
                while in_a_row < 10 {
                    if started.elapsed() > Duration::from_secs(300) {
                        bail!("the budget never stopped the traffic");
                    }
                    match chat(&http, addr, (i + c) % 2 == 0).await? {
                        200 => {
                            admitted += 1;
                            in_a_row = 0;
                        }
                        429 => {
                            in_a_row += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => bail!("unexpected status {other}"),
                    }
                }
                Ok(admitted)
            }));
        }
    }
    let mut admitted = 0;
    for client in clients {
        admitted += client.await??;
    }
    let took = started.elapsed();
    let (requests, cost) = upstream(&cluster.mock);
    let budgets: Api<Budget> = Api::namespaced(client.clone(), &ns);
    let spent = wait_for("the final spend", Duration::from_secs(60), || async {
        let spent = budgets
            .get("monthly")
            .await?
            .status
            .unwrap_or_default()
            .spent_usd;
        Ok((spent == usd(cost)).then_some(spent))
    })
    .await
    .unwrap_or(f64::NAN);
    let limit = (limit_usd * 1e9) as u64;
    let bound = (limit / 100).max(40 * INPUT_NANO + 40 * OUTPUT_NANO);
    Ok(format!(
        "## Budget overshoot: 3 gateway processes (flush 1 s), 12 concurrent clients, ${limit_usd} budget\n\n\
         | figure | value |\n|---|---|\n\
         | admitted requests (upstream saw) | {admitted} ({requests}) in {:.1} s |\n\
         | spend (upstream-reported cost) | ${:.6} |\n\
         | Budget.status.spentUSD | ${spent:.6} |\n\
         | **overshoot past the limit** | ${:.6} ({:.3} % of the limit) |\n\
         | documented bound: max(1 % of limit, one request's max cost) | ${:.6} |\n\
         | unused at the end (limit − spend) | ${:.6} |\n\n",
        took.as_secs_f64(),
        usd(cost),
        usd(cost.saturating_sub(limit)),
        100.0 * cost.saturating_sub(limit) as f64 / limit as f64,
        usd(bound),
        usd(limit.saturating_sub(cost)),
    ))
}

/// Phase 2b: steady traffic through one gateway (flush 1 s), `kill -9`, usage lost.
async fn kill_loss(client: &Client, binary: &std::path::Path) -> Result<String> {
    let cluster = cluster(client, "usage-bench-kill", 1_000.0).await?;
    let ns = cluster.namespace.name().to_owned();
    let http = reqwest::Client::new();
    let mut rows = String::new();
    let mut gateway = ReportingGateway::spawn(binary, &ns, &ns, &cluster.url, "1s", "gw-kill")?;
    wait_serving(&http, &gateway).await?;
    let mut totals = Vec::new();
    for round in 0..5 {
        if round > 0 {
            // Past the grant TTL: the killed gateway's grant no longer holds back the next one.
            tokio::time::sleep(Duration::from_secs(6)).await;
            gateway = ReportingGateway::spawn(
                binary,
                &ns,
                &ns,
                &cluster.url,
                "1s",
                &format!("gw-kill-{round}"),
            )?;
            wait_serving(&http, &gateway).await?;
        }
        let started = Instant::now();
        // Kill at a different point of the flush interval each round.
        let run = Duration::from_millis(3_000 + 200 * round);
        let mut finished = Vec::new();
        while started.elapsed() < run {
            let mut batch = Vec::new();
            for i in 0..4 {
                batch.push(chat(&http, gateway.addr, i % 2 == 0));
            }
            for status in futures::future::join_all(batch).await {
                if status? == 200 {
                    finished.push(Instant::now());
                }
            }
        }
        gateway.kill9()?;
        let killed = Instant::now();
        let last_interval = finished
            .iter()
            .filter(|at| killed.duration_since(**at) <= Duration::from_secs(1))
            .count();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (requests, cost) = upstream(&cluster.mock);
        let key = Api::<VirtualKey>::namespaced(client.clone(), &ns)
            .get("app")
            .await?;
        let usage = key.status.and_then(|s| s.usage).unwrap_or_default();
        let lost_requests = requests as i64 - usage.requests;
        let lost_cost = usd(cost) - usage.cost_usd;
        let previous: i64 = totals.iter().map(|(lost, _)| lost).sum();
        totals.push((lost_requests - previous, last_interval));
        rows.push_str(&format!(
            "| {} | {} | {} | {:.6} |\n",
            round + 1,
            lost_requests - previous,
            last_interval,
            lost_cost,
        ));
    }
    Ok(format!(
        "## Loss on `kill -9` of a gateway (flush 1 s, 4 concurrent clients; a new gateway after each kill, operator grant TTL 5 s)\n\n\
         | kill | requests lost | requests finished in the last second | cumulative $ lost |\n|---|---|---|---|\n{rows}\n"
    ))
}
