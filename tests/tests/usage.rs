//! Usage ingest end to end against a real kube-apiserver: reports posted over HTTP the way gateways post
//! them are folded exactly once into Budget, VirtualKey and LLMRoute status — across a leader kill and a
//! takeover by the follower, with resent reports acknowledged as duplicates; invalid reports are refused
//! with 400; concurrent reporters stay within a budget through their grants; a monthly window rolls over
//! on an injected clock with each threshold Event fired once per window; and a failing backend shows in
//! LLMRoute status within one status interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{TimeZone as _, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sluice_crds::conditions::{READY, reason};
use sluice_crds::usage::{
    BackendHealthReport, CircuitState, NanoUsd, UsageDelta, UsageReport, usd,
};
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use sluice_operator::usage::ShiftedClock;
use sluice_tests::harness::{
    Answer, ControlPlane, EmbeddedOperator, TestNamespace, TestReporter, install_crds,
    server_side_apply as apply, usage_operator_settings, wait_for,
};

/// Time for the operator to publish, lead, or fold into status (well under a second normally; the
/// margin is for a busy 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(30);
const BUDGET: &str = "monthly";
const KEY: &str = "app";
const ROUTE: &str = "chat";

async fn setup(prefix: &str) -> Result<(Client, TestNamespace)> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::new(&client, prefix).await?;
    Ok((client, namespace))
}

/// A provider Secret, a route with two backends, an operator-issued key and a monthly $10 budget (UTC,
/// thresholds 50/80/100) for gateway `gateway` (named after the namespace).
async fn resources(client: &Client, ns: &str, limit_usd: f64) -> Result<()> {
    apply::<k8s_openapi::api::core::v1::Secret>(
        client,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "providers", "namespace": ns},
               "stringData": {"key": "sk-upstream-usage-test"}}),
    )
    .await?;
    apply::<LLMRoute>(
        client,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
               "metadata": {"name": ROUTE, "namespace": ns},
               "spec": {"gateway": ns, "model": "chat", "budgetRefs": [{"name": BUDGET}], "backends": [
                   {"name": "primary", "provider": "openai", "model": "gpt-4o-mini", "credentialsRef": {"name": "providers", "key": "key"}},
                   {"name": "fallback", "provider": "anthropic", "model": "claude-haiku-4-5", "credentialsRef": {"name": "providers", "key": "key"}}
               ]}}),
    )
    .await?;
    apply::<VirtualKey>(
        client,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "VirtualKey",
               "metadata": {"name": KEY, "namespace": ns}, "spec": {"gateway": ns}}),
    )
    .await?;
    apply::<Budget>(
        client,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget",
               "metadata": {"name": BUDGET, "namespace": ns},
               "spec": {"gateway": ns, "limitUSD": limit_usd, "window": "monthly", "timeZone": "UTC", "thresholds": [50, 80, 100]}}),
    )
    .await?;
    Ok(())
}

async fn wait_budget_ready(client: &Client, ns: &str) -> Result<Budget> {
    let api: Api<Budget> = Api::namespaced(client.clone(), ns);
    wait_for("the Budget to be Ready", TIMEOUT, || async {
        let budget = api.get(BUDGET).await?;
        let ready = budget.status.as_ref().is_some_and(|status| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == "True")
        });
        Ok(ready.then_some(budget))
    })
    .await
}

fn id(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// What the statuses must show: the sum of every acknowledged, non-duplicate delta.
#[derive(Clone, Debug, Default, PartialEq)]
struct Expected {
    requests: u64,
    input: u64,
    output: u64,
    cost: NanoUsd,
}

impl Expected {
    fn add(&mut self, delta: &UsageDelta) {
        self.requests += delta.requests;
        self.input += delta.input_tokens;
        self.output += delta.output_tokens;
        self.cost += delta.cost_nano_usd;
    }
}

fn delta(ns: &str, rng: &mut rand::rngs::StdRng) -> UsageDelta {
    let input = rng.random_range(10..5_000);
    let output = rng.random_range(1..2_000);
    UsageDelta {
        key: id(ns, KEY),
        route: id(ns, ROUTE),
        budgets: vec![id(ns, BUDGET)],
        requests: rng.random_range(1..20),
        input_tokens: input,
        output_tokens: output,
        // gpt-4o-mini list prices: $0.15 in / $0.60 out per million tokens = 150 / 600 nano-dollars per token.
        cost_nano_usd: input * 150 + output * 600,
        last_used: Utc::now(),
        ..UsageDelta::default()
    }
}

/// Waits until key, route and budget status show `expected`.
async fn wait_for_totals(client: &Client, ns: &str, expected: &Expected) -> Result<()> {
    let keys: Api<VirtualKey> = Api::namespaced(client.clone(), ns);
    let routes: Api<LLMRoute> = Api::namespaced(client.clone(), ns);
    let budgets: Api<Budget> = Api::namespaced(client.clone(), ns);
    let want = (
        expected.requests as i64,
        expected.input as i64,
        expected.output as i64,
        usd(expected.cost),
    );
    let seen = std::sync::Mutex::new(String::new());
    let result = wait_for("status totals to equal the reported sums", TIMEOUT, || {
        let (keys, routes, budgets) = (keys.clone(), routes.clone(), budgets.clone());
        let seen = &seen;
        async move {
            let key = keys.get(KEY).await?.status.and_then(|s| s.usage);
            let route = routes.get(ROUTE).await?.status.and_then(|s| s.usage);
            let budget = budgets.get(BUDGET).await?.status.unwrap_or_default();
            let of = |u: &sluice_crds::v1alpha1::UsageTotals| {
                (u.requests, u.input_tokens, u.output_tokens, u.cost_usd)
            };
            *seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = format!(
                "key {:?}, route {:?}, budget spent {} tokens {}",
                key.as_ref().map(of),
                route.as_ref().map(of),
                budget.spent_usd,
                budget.tokens
            );
            Ok((key.as_ref().map(of) == Some(want)
                && route.as_ref().map(of) == Some(want)
                && budget.spent_usd == want.3
                && budget.tokens == want.1 + want.2)
                .then_some(()))
        }
    })
    .await;
    let seen = seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    result.with_context(|| format!("want {want:?}; saw {seen}"))
}

/// Posts a 9 MiB body and returns the status line of the answer (the server may stop reading early).
async fn oversized_post(addr: std::net::SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let size = 9 * 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/usage/reports HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        // The server answers and closes once the limit is passed: write errors are expected.
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b' '; size]).await;
        writer
    });
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(TIMEOUT, reader.read(&mut answer)).await??;
    sender.abort();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn reports_are_folded_exactly_once_across_a_leader_kill_and_takeover() -> Result<()> {
    let (client, namespace) = setup("usage-exact").await?;
    let ns = namespace.name().to_owned();
    resources(&client, &ns, 10_000.0).await?;
    let clock = Arc::new(ShiftedClock::new());
    let mut leader =
        EmbeddedOperator::start(usage_operator_settings(&ns, &ns, "usage-a"), clock.clone())?;
    wait_budget_ready(&client, &ns).await?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut gateways = [
        TestReporter::new("gw-0", &ns),
        TestReporter::new("gw-1", &ns),
    ];
    let mut expected = Expected::default();
    let mut sent: Vec<UsageReport> = Vec::new();
    for round in 0..12 {
        let reporter = &mut gateways[round % 2];
        let usage: Vec<UsageDelta> = (0..rng.random_range(1..4))
            .map(|_| delta(&ns, &mut rng))
            .collect();
        let report = reporter.report(usage.clone(), vec![], vec![id(&ns, BUDGET)]);
        let ack = reporter.send(&leader.usage_url(), &report, TIMEOUT).await?;
        ensure!(!ack.duplicate && ack.sequence == report.sequence, "{ack:?}");
        let grant = ack.budgets.first().context("no budget grant")?;
        ensure!(
            grant.id == id(&ns, BUDGET) && grant.limit_nano_usd == 10_000_000_000_000,
            "{grant:?}"
        );
        usage.iter().for_each(|d| expected.add(d));
        ensure!(
            grant.spent_nano_usd == expected.cost,
            "global spend in the ack: {grant:?} vs {expected:?}"
        );
        sent.push(report);
    }
    // A resend of an acknowledged report (the ack was lost) is acknowledged again and not counted.
    let Answer::Ack(again) = gateways[0].post(&leader.usage_url(), &sent[0]).await? else {
        anyhow::bail!("a resend must be acknowledged");
    };
    ensure!(
        again.duplicate && again.sequence == sent[0].sequence,
        "{again:?}"
    );
    wait_for_totals(&client, &ns, &expected).await?;

    // Invalid reports: 400 with every problem named, and nothing counted.
    let mut bad = gateways[0].report(vec![delta(&ns, &mut rng)], vec![], vec![]);
    bad.protocol = 99;
    bad.usage[0].key = "no-namespace".into();
    match gateways[0].post(&leader.usage_url(), &bad).await? {
        Answer::Refused(400, body) => {
            let body: Value = serde_json::from_str(&body)?;
            let message = body["error"]["message"].as_str().unwrap_or_default();
            ensure!(body["error"]["code"] == "invalid_usage_report", "{body}");
            ensure!(
                message.contains("protocol: version 99") && message.contains("usage[0].key"),
                "{message}"
            );
        }
        other => anyhow::bail!("expected 400, got {other:?}"),
    }
    let http = reqwest::Client::new();
    let not_json = http
        .post(leader.usage_url())
        .body("{\"protocol\": 1")
        .send()
        .await?;
    ensure!(not_json.status() == 400, "{}", not_json.status());
    // An oversized body is refused from its Content-Length, before it is read.
    let status_line = oversized_post(leader.usage_addr).await?;
    ensure!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let wrong_method = http.get(leader.usage_url()).send().await?;
    ensure!(wrong_method.status() == 405);
    ensure!(
        leader
            .metric("sluice_operator_usage_reports_total{result=\"rejected\"}")
            .await?
            >= 3.0
    );
    ensure!(
        leader
            .metric("sluice_operator_usage_reports_total{result=\"duplicate\"}")
            .await?
            == 1.0
    );

    // The ledger is a gzip-compressed ConfigMap in the operator's namespace.
    let ledger = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get(&format!("sluice-usage-ledger-{ns}"))
        .await?;
    let stored = ledger
        .binary_data
        .as_ref()
        .and_then(|d| d.get("ledger.json.gz"))
        .context("no ledger data")?;
    ensure!(stored.0.starts_with(&[0x1f, 0x8b]), "the ledger is gzip");

    // A follower refuses with 503 (the gateway resends; the Service reaches the leader eventually).
    let follower =
        EmbeddedOperator::start(usage_operator_settings(&ns, &ns, "usage-b"), clock.clone())?;
    let probe = gateways[1].report(vec![], vec![], vec![]);
    match gateways[1].post(&follower.usage_url(), &probe).await? {
        Answer::Refused(503, body) => ensure!(body.contains("not_leader"), "{body}"),
        other => anyhow::bail!("a follower must answer 503, got {other:?}"),
    }

    // Kill the leader mid-stream: the next report waits (503s) until the follower leads, then folds.
    leader.kill()?;
    let usage = vec![delta(&ns, &mut rng)];
    let report = gateways[1].report(usage.clone(), vec![], vec![id(&ns, BUDGET)]);
    let ack = gateways[1]
        .send(&follower.usage_url(), &report, Duration::from_secs(60))
        .await?;
    ensure!(!ack.duplicate, "{ack:?}");
    usage.iter().for_each(|d| expected.add(d));
    // Reports acknowledged by the old leader are duplicates for the new one: the watermark was persisted.
    for old in [&sent[10], &sent[11]] {
        let reporter = &gateways[old.sequence as usize % 2];
        match reporter.post(&follower.usage_url(), old).await? {
            Answer::Ack(ack) => ensure!(ack.duplicate, "{ack:?} for {}", old.sequence),
            other => anyhow::bail!("{other:?}"),
        }
    }
    for round in 0..4 {
        let reporter = &mut gateways[round % 2];
        let usage = vec![delta(&ns, &mut rng)];
        let report = reporter.report(usage.clone(), vec![], vec![id(&ns, BUDGET)]);
        reporter
            .send(&follower.usage_url(), &report, TIMEOUT)
            .await?;
        usage.iter().for_each(|d| expected.add(d));
    }
    wait_for_totals(&client, &ns, &expected).await?;
    drop(namespace);
    Ok(())
}

#[tokio::test]
async fn grants_keep_concurrent_reporters_within_the_budget() -> Result<()> {
    let (client, namespace) = setup("usage-grants").await?;
    let ns = namespace.name().to_owned();
    let limit_usd = 1.0;
    resources(&client, &ns, limit_usd).await?;
    let operator = EmbeddedOperator::start(
        usage_operator_settings(&ns, &ns, "usage-g"),
        Arc::new(ShiftedClock::new()),
    )?;
    wait_budget_ready(&client, &ns).await?;
    let url = operator.usage_url();
    let budget_id = id(&ns, BUDGET);
    let max_cost: NanoUsd = 5_000_000;

    // Three simulated gateways: each admits a request only while its exact cost fits in its grant,
    // reports what it spent, and stops after its grant stayed empty three times.
    let mut tasks = Vec::new();
    for g in 0..3u64 {
        let (ns, url, budget_id) = (ns.clone(), url.clone(), budget_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut reporter = TestReporter::new(&format!("gw-{g}"), &ns);
            let mut rng = rand::rngs::StdRng::seed_from_u64(g);
            let mut grant: NanoUsd = 0;
            let mut spent_total: NanoUsd = 0;
            let mut empty = 0;
            while empty < 3 {
                let mut used: NanoUsd = 0;
                let mut usage = Vec::new();
                loop {
                    let cost = rng.random_range(1_000_000..=max_cost);
                    if used + cost > grant {
                        break;
                    }
                    used += cost;
                    usage.push(UsageDelta {
                        key: id(&ns, KEY),
                        route: id(&ns, ROUTE),
                        budgets: vec![budget_id.clone()],
                        requests: 1,
                        input_tokens: 1,
                        output_tokens: 1,
                        cost_nano_usd: cost,
                        last_used: Utc::now(),
                        ..UsageDelta::default()
                    });
                }
                spent_total += used;
                let report = reporter.report(usage, vec![], vec![budget_id.clone()]);
                let ack = reporter.send(&url, &report, TIMEOUT).await?;
                let state = ack.budgets.first().context("no grant")?;
                ensure!(
                    state.spent_nano_usd <= state.limit_nano_usd,
                    "spend passed the limit: {state:?}"
                );
                grant = state.grant_nano_usd;
                empty = if grant < 1_000_000 { empty + 1 } else { 0 };
                tokio::time::sleep(Duration::from_millis(rng.random_range(5..30))).await;
            }
            Ok::<_, anyhow::Error>(spent_total)
        }));
    }
    let mut spent: NanoUsd = 0;
    for task in tasks {
        spent += task.await??;
    }
    let limit: NanoUsd = 1_000_000_000;
    eprintln!("grants: three reporters spent {spent} of {limit} nano-dollars");
    ensure!(spent <= limit, "overshoot: {spent} > {limit}");
    ensure!(
        spent >= limit - 3 * max_cost * 2,
        "grants left the budget unused: {spent}"
    );
    let budgets: Api<Budget> = Api::namespaced(client.clone(), &ns);
    wait_for("the Budget to show the spend", TIMEOUT, || async {
        let status = budgets.get(BUDGET).await?.status.unwrap_or_default();
        Ok((status.spent_usd == usd(spent)).then_some(status))
    })
    .await?;
    drop(namespace);
    Ok(())
}

/// Threshold Events about the budget: note → count (a repeated Event counts its series).
async fn threshold_events(client: &Client, ns: &str) -> Result<BTreeMap<String, i32>> {
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let mut counts = BTreeMap::new();
    for event in events {
        let about_budget = event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(BUDGET);
        let threshold = matches!(
            event.reason.as_deref(),
            Some(reason::WARNING) | Some(reason::EXCEEDED)
        );
        if about_budget && threshold {
            *counts.entry(event.note.unwrap_or_default()).or_insert(0) +=
                event.series.as_ref().map_or(1, |series| series.count);
        }
    }
    Ok(counts)
}

#[tokio::test]
async fn a_monthly_window_rolls_over_and_each_threshold_fires_once_per_window() -> Result<()> {
    let (client, namespace) = setup("usage-window").await?;
    let ns = namespace.name().to_owned();
    resources(&client, &ns, 10.0).await?;
    let clock = Arc::new(ShiftedClock::new());
    clock.set_now(
        Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0)
            .single()
            .context("time")?,
    );
    let operator =
        EmbeddedOperator::start(usage_operator_settings(&ns, &ns, "usage-w"), clock.clone())?;
    let budgets: Api<Budget> = Api::namespaced(client.clone(), &ns);
    wait_for("the January window", TIMEOUT, || async {
        let status = budgets.get(BUDGET).await?.status.unwrap_or_default();
        Ok(status
            .window_start
            .as_ref()
            .is_some_and(|t| t.0.to_string() == "2025-01-01T00:00:00Z")
            .then_some(()))
    })
    .await?;
    let url = operator.usage_url();
    let mut reporter = TestReporter::new("gw-0", &ns);
    let spend = |reporter: &mut TestReporter, dollars: f64| {
        reporter.report(
            vec![UsageDelta {
                key: id(&ns, KEY),
                route: id(&ns, ROUTE),
                budgets: vec![id(&ns, BUDGET)],
                requests: 1,
                input_tokens: 100,
                output_tokens: 100,
                cost_nano_usd: (dollars * 1e9) as NanoUsd,
                last_used: Utc::now(),
                ..UsageDelta::default()
            }],
            vec![],
            vec![id(&ns, BUDGET)],
        )
    };
    let wait_state = |percent: i32| {
        let budgets = budgets.clone();
        async move {
            wait_for(&format!("the Budget at {percent}%"), TIMEOUT, || async {
                let status = budgets.get(BUDGET).await?.status.unwrap_or_default();
                Ok((status.percent == percent).then_some(status))
            })
            .await
        }
    };
    // January: 55 % fires 50 %; 70 % fires nothing new; 85 % fires 80 %.
    let report = spend(&mut reporter, 5.5);
    reporter.send(&url, &report, TIMEOUT).await?;
    let status = wait_state(55).await?;
    ensure!(
        status.last_threshold == Some(50) && format!("{:?}", status.state) == "Warning",
        "{status:?}"
    );
    let report = spend(&mut reporter, 1.5);
    reporter.send(&url, &report, TIMEOUT).await?;
    wait_state(70).await?;
    let report = spend(&mut reporter, 1.5);
    reporter.send(&url, &report, TIMEOUT).await?;
    wait_state(85).await?;
    let january = wait_for("two January threshold Events", TIMEOUT, || async {
        let events = threshold_events(&client, &ns).await?;
        Ok((events.len() == 2).then_some(events))
    })
    .await
    .with_context(|| format!("Events: {}", namespace.dump()))?;
    ensure!(january.values().all(|count| *count == 1), "{january:?}");
    ensure!(
        january.keys().any(|note| note.contains("50%"))
            && january.keys().any(|note| note.contains("80%")),
        "{january:?}"
    );

    // Three seconds before February in UTC: the window rolls over as the clock passes midnight.
    clock.set_now(
        Utc.with_ymd_and_hms(2025, 1, 31, 23, 59, 57)
            .single()
            .context("time")?,
    );
    let rolled = wait_for("the February window", TIMEOUT, || async {
        let status = budgets.get(BUDGET).await?.status.unwrap_or_default();
        Ok(status
            .window_start
            .as_ref()
            .is_some_and(|t| t.0.to_string() == "2025-02-01T00:00:00Z")
            .then_some(status))
    })
    .await?;
    ensure!(
        rolled.spent_usd == 0.0
            && rolled.percent == 0
            && rolled.last_threshold.is_none()
            && rolled.resets_at.as_ref().map(|t| t.0.to_string())
                == Some("2025-03-01T00:00:00Z".into()),
        "{rolled:?}"
    );
    // February: 60 % fires 50 % again (once), and the key's all-time totals kept counting.
    let report = spend(&mut reporter, 6.0);
    let ack = reporter.send(&url, &report, TIMEOUT).await?;
    ensure!(ack.budgets[0].spent_nano_usd == 6_000_000_000, "{ack:?}");
    wait_state(60).await?;
    let all = wait_for("the February 50% Event", TIMEOUT, || async {
        let events = threshold_events(&client, &ns).await?;
        Ok((events.len() == 3).then_some(events))
    })
    .await?;
    ensure!(
        all.values().all(|count| *count == 1),
        "each threshold fires once per window: {all:?}"
    );
    ensure!(
        all.keys().filter(|note| note.contains("50%")).count() == 2,
        "{all:?}"
    );
    // More spend below the next threshold announces nothing.
    let report = spend(&mut reporter, 0.5);
    reporter.send(&url, &report, TIMEOUT).await?;
    wait_state(65).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        threshold_events(&client, &ns).await? == all,
        "no Event below the next threshold"
    );
    let key = Api::<VirtualKey>::namespaced(client.clone(), &ns)
        .get(KEY)
        .await?;
    ensure!(
        key.status.and_then(|s| s.usage).map(|u| u.cost_usd) == Some(15.0),
        "key totals do not reset"
    );
    drop(namespace);
    Ok(())
}

#[tokio::test]
async fn a_failing_backend_shows_in_route_status_within_one_status_interval() -> Result<()> {
    let (client, namespace) = setup("usage-health").await?;
    let ns = namespace.name().to_owned();
    resources(&client, &ns, 10.0).await?;
    let operator = EmbeddedOperator::start(
        usage_operator_settings(&ns, &ns, "usage-h"),
        Arc::new(ShiftedClock::new()),
    )?;
    let routes: Api<LLMRoute> = Api::namespaced(client.clone(), &ns);
    wait_for("the route with both backends ready", TIMEOUT, || async {
        let status = routes.get(ROUTE).await?.status.unwrap_or_default();
        Ok((status.backends_ready.as_deref() == Some("2/2")).then_some(()))
    })
    .await?;
    let mut reporter = TestReporter::new("gw-0", &ns);
    let failing = BackendHealthReport {
        route: id(&ns, ROUTE),
        backend: "primary".into(),
        circuit: CircuitState::Open,
        attempts: 20,
        failures: 15,
        p50_latency_ms: Some(120.0),
        p95_latency_ms: Some(900.0),
        last_error: Some("upstream_5xx".into()),
        last_error_time: Some(Utc::now()),
    };
    let healthy = BackendHealthReport {
        route: id(&ns, ROUTE),
        backend: "fallback".into(),
        circuit: CircuitState::Closed,
        attempts: 15,
        failures: 0,
        p50_latency_ms: Some(80.0),
        p95_latency_ms: Some(150.0),
        ..BackendHealthReport::default()
    };
    let report = reporter.report(vec![], vec![failing, healthy], vec![]);
    let started = Instant::now();
    reporter
        .send(&operator.usage_url(), &report, TIMEOUT)
        .await?;
    let status = wait_for("the open circuit in LLMRoute status", TIMEOUT, || async {
        let status = routes.get(ROUTE).await?.status.unwrap_or_default();
        Ok((status.backends_ready.as_deref() == Some("1/2")).then_some(status))
    })
    .await?;
    let lag = started.elapsed();
    eprintln!("health: an open circuit reached LLMRoute status {lag:?} after the report");
    ensure!(
        lag < Duration::from_secs(3),
        "one status interval (1 s) plus a patch; took {lag:?}"
    );
    let primary = status
        .backends
        .iter()
        .find(|b| b.name == "primary")
        .context("primary")?;
    ensure!(
        primary.circuit.as_deref() == Some("Open")
            && primary.error_rate == Some(0.75)
            && primary.last_error.as_deref() == Some("upstream_5xx")
            && primary.p95_latency_ms == Some(900.0),
        "{primary:?}"
    );
    let fallback = status
        .backends
        .iter()
        .find(|b| b.name == "fallback")
        .context("fallback")?;
    ensure!(
        fallback.circuit.as_deref() == Some("Closed") && fallback.error_rate == Some(0.0),
        "{fallback:?}"
    );

    // The next report no longer lists the backend (closed and idle): ready again, last error kept.
    let report = reporter.report(vec![], vec![], vec![]);
    reporter
        .send(&operator.usage_url(), &report, TIMEOUT)
        .await?;
    let status = wait_for("the backend ready again", TIMEOUT, || async {
        let status = routes.get(ROUTE).await?.status.unwrap_or_default();
        Ok((status.backends_ready.as_deref() == Some("2/2")).then_some(status))
    })
    .await?;
    ensure!(
        status.backends.iter().any(|b| b.name == "primary"
            && b.circuit.as_deref() == Some("Closed")
            && b.last_error.as_deref() == Some("upstream_5xx")),
        "{:?}",
        status.backends
    );
    drop(namespace);
    Ok(())
}
