//! Metering end to end with real gateway processes: gateways (API-watch mode, usage reporter on) in front
//! of the wire-faithful mock provider report to an operator against a real kube-apiserver, and the
//! usage in status equals what the mock upstream reported — after mixed load (streaming and not, an
//! OpenAI and an Anthropic backend), a graceful restart of one gateway and a restart of the operator
//! while traffic continued; a `kill -9` of a gateway loses at most one flush interval of usage.

#[expect(
    dead_code,
    reason = "only the gateway binary builder of the shared support is used here"
)]
mod gateway_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kube::{Api, Client};
use serde_json::json;
use sluice_crds::conditions::READY;
use sluice_crds::usage::usd;
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use sluice_operator::usage::ShiftedClock;
use sluice_tests::harness::{
    ControlPlane, EmbeddedOperator, ReportingGateway, TestNamespace, free_loopback_port,
    install_crds, server_side_apply as apply, usage_operator_settings, wait_for,
};
use sluice_tests::mock::{MockProvider, Outcome};

const TIMEOUT: Duration = Duration::from_secs(45);
const APP_KEY: &str = "sk-sluice-usage-e2e-app-0123456789abcdefghijklmn";
/// Backend prices: $1 per million input tokens and $2 per million output tokens, i.e. 1,000 and 2,000
/// nano-dollars per token, so the expected cost is an exact integer sum.
const INPUT_NANO: u64 = 1_000;
const OUTPUT_NANO: u64 = 2_000;

/// Two routes (OpenAI and Anthropic backends on the mock), the app key and a monthly budget.
async fn resources(client: &Client, ns: &str, mock: &MockProvider, limit_usd: f64) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    apply::<Secret>(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "providers", "namespace": ns}, "stringData": {"key": "sk-upstream-usage-e2e"}})).await?;
    apply::<Secret>(client, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": ns}, "stringData": {"key": APP_KEY}})).await?;
    let pricing = json!({"inputPerMillion": 1.0, "outputPerMillion": 2.0});
    for (name, model, provider, upstream_model, endpoint) in [
        (
            "openai",
            "openai-chat",
            "openai",
            "gpt-4o-mini",
            mock.openai_base_url(),
        ),
        (
            "anthropic",
            "anthropic-chat",
            "anthropic",
            "claude-haiku-4-5",
            mock.url(),
        ),
    ] {
        apply::<LLMRoute>(client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"gateway": ns, "model": model, "backends": [{"name": provider, "provider": provider, "model": upstream_model,
                "endpoint": endpoint, "pricing": pricing, "credentialsRef": {"name": "providers", "key": "key"}}]}})).await?;
    }
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
    Ok(())
}

fn spawn_gateway(ns: &str, usage_url: &str, flush: &str, pod: &str) -> Result<ReportingGateway> {
    ReportingGateway::spawn(
        &gateway_support::gateway_binary()?,
        ns,
        ns,
        usage_url,
        flush,
        pod,
    )
}

/// One chat completion through `gateway`, body read to the end; returns the status.
async fn chat(
    http: &reqwest::Client,
    gateway: SocketAddr,
    model: &str,
    stream: bool,
) -> Result<u16> {
    let mut body = json!({"model": model, "max_tokens": 40, "stream": stream,
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
    let text = response.bytes().await?;
    if status != 200 {
        eprintln!(
            "{model} stream={stream}: {status} {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(status)
}

/// `count` requests over `gateways`, four at a time, mixing models and streaming.
async fn load(http: &reqwest::Client, gateways: &[SocketAddr], count: usize) -> Result<()> {
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..count {
        let gateway = gateways[i % gateways.len()];
        let model = if i % 3 == 0 {
            "anthropic-chat"
        } else {
            "openai-chat"
        };
        pending.push(chat(http, gateway, model, i % 2 == 0));
        if pending.len() >= 4 {
            use futures::StreamExt as _;
            if let Some(status) = pending.next().await {
                ensure!(status? == 200, "a request failed");
            }
        }
    }
    use futures::StreamExt as _;
    while let Some(status) = pending.next().await {
        ensure!(status? == 200, "a request failed");
    }
    Ok(())
}

/// Requests, input and output tokens the mock reported in successful answers.
fn upstream_totals(mock: &MockProvider) -> (i64, i64, i64) {
    let mut totals = (0i64, 0i64, 0i64);
    for request in mock.requests() {
        if let (Outcome::Status(200), Some(usage)) = (request.outcome, request.usage) {
            totals.0 += 1;
            totals.1 += usage.prompt_tokens as i64;
            totals.2 += usage.completion_tokens as i64;
        }
    }
    totals
}

/// What the key, the routes and the budget show: (requests, input, output, cost USD) and budget spend.
async fn status_totals(
    client: &Client,
    ns: &str,
) -> Result<((i64, i64, i64, f64), f64, (i64, i64, i64, f64))> {
    let key = Api::<VirtualKey>::namespaced(client.clone(), ns)
        .get("app")
        .await?;
    let usage = key.status.and_then(|s| s.usage).unwrap_or_default();
    let budget = Api::<Budget>::namespaced(client.clone(), ns)
        .get("monthly")
        .await?;
    let mut routes = (0, 0, 0, 0.0);
    for name in ["openai", "anthropic"] {
        let route = Api::<LLMRoute>::namespaced(client.clone(), ns)
            .get(name)
            .await?;
        let u = route.status.and_then(|s| s.usage).unwrap_or_default();
        routes = (
            routes.0 + u.requests,
            routes.1 + u.input_tokens,
            routes.2 + u.output_tokens,
            routes.3 + u.cost_usd,
        );
    }
    Ok((
        (
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
            usage.cost_usd,
        ),
        budget.status.unwrap_or_default().spent_usd,
        routes,
    ))
}

async fn setup(
    prefix: &str,
    limit_usd: f64,
) -> Result<(Client, TestNamespace, MockProvider, EmbeddedOperator, u16)> {
    let client = ControlPlane::shared()?.admin_client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::new(&client, prefix).await?;
    let ns = namespace.name().to_owned();
    let mock = MockProvider::start().await?;
    resources(&client, &ns, &mock, limit_usd).await?;
    let port = free_loopback_port()?;
    let mut settings = usage_operator_settings(&ns, &ns, "usage-op");
    settings.usage_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let operator = EmbeddedOperator::start(settings, Arc::new(ShiftedClock::new()))?;
    let keys: Api<VirtualKey> = Api::namespaced(client.clone(), &ns);
    wait_for("the key to be Ready", TIMEOUT, || async {
        let key = keys.get("app").await?;
        Ok(key
            .status
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == READY && c.status == "True")
            })
            .then_some(()))
    })
    .await?;
    Ok((client, namespace, mock, operator, port))
}

async fn wait_serving(http: &reqwest::Client, gateway: &ReportingGateway) -> Result<()> {
    wait_for("the gateway to serve the key", TIMEOUT, || async {
        Ok((chat(http, gateway.addr, "openai-chat", false).await? == 200).then_some(()))
    })
    .await
    .with_context(|| gateway.logs())
}

#[tokio::test]
async fn status_usage_equals_upstream_usage_across_gateway_and_operator_restarts() -> Result<()> {
    let (client, namespace, mock, mut operator, port) = setup("usage-gw-exact", 100.0).await?;
    let ns = namespace.name().to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut first = spawn_gateway(&ns, &url, "200ms", "gw-0")?;
    let second = spawn_gateway(&ns, &url, "200ms", "gw-1")?;
    wait_serving(&http, &first).await?;
    wait_serving(&http, &second).await?;
    load(&http, &[first.addr, second.addr], 40).await?;

    // Graceful restart of one gateway: it flushes and says goodbye; its replacement is a new reporter.
    first.terminate()?;
    ensure!(
        first.logs().contains("final usage report delivered"),
        "{}",
        first.logs()
    );
    let first = spawn_gateway(&ns, &url, "200ms", "gw-0")?;
    wait_serving(&http, &first).await?;
    load(&http, &[first.addr, second.addr], 30).await?;

    // Operator restart while traffic continues: reports wait at the gateways and are resent.
    operator.stop()?;
    load(&http, &[first.addr, second.addr], 30).await?;
    let mut settings = usage_operator_settings(&ns, &ns, "usage-op");
    settings.usage_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _operator = EmbeddedOperator::start(settings, Arc::new(ShiftedClock::new()))?;
    load(&http, &[first.addr, second.addr], 20).await?;

    let (requests, input, output) = upstream_totals(&mock);
    let cost = usd(input as u64 * INPUT_NANO + output as u64 * OUTPUT_NANO);
    let want = (requests, input, output, cost);
    let seen = Mutex::new(None);
    let result = wait_for(
        "status to equal what the upstream reported",
        TIMEOUT,
        || {
            let seen = &seen;
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let totals = status_totals(&client, &ns).await?;
                let done = totals.0 == want && totals.1 == cost && totals.2 == want;
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(totals);
                Ok(done.then_some(()))
            }
        },
    )
    .await;
    let seen = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
    eprintln!("usage: upstream reported {want:?}; status shows {seen:?}");
    result.with_context(|| format!("status {seen:?} vs upstream {want:?}"))?;
    drop(namespace);
    Ok(())
}

#[tokio::test]
async fn a_killed_gateway_loses_at_most_one_flush_interval() -> Result<()> {
    let (client, namespace, mock, _operator, port) = setup("usage-gw-kill", 100.0).await?;
    let ns = namespace.name().to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let flush = Duration::from_secs(1);
    let mut gateway = spawn_gateway(&ns, &url, "1s", "gw-kill")?;
    wait_serving(&http, &gateway).await?;
    // Steady traffic for a few flush intervals, recording when each request finished.
    let started = Instant::now();
    let mut finished: Vec<Instant> = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        ensure!(
            chat(
                &http,
                gateway.addr,
                "openai-chat",
                finished.len().is_multiple_of(2)
            )
            .await?
                == 200
        );
        finished.push(Instant::now());
    }
    gateway.kill9()?;
    let killed = Instant::now();
    let in_last_interval = finished
        .iter()
        .filter(|at| killed.duration_since(**at) <= flush)
        .count() as i64;
    let (requests, input, output) = upstream_totals(&mock);
    // Whatever was reported before the kill reaches status; wait for it to settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (key, _, _) = status_totals(&client, &ns).await?;
    let lost = requests - key.0;
    let lost_cost = usd(input as u64 * INPUT_NANO + output as u64 * OUTPUT_NANO) - key.3;
    eprintln!(
        "kill -9: {lost} of {requests} requests (${lost_cost:.6}) lost; {in_last_interval} finished in the last flush interval"
    );
    ensure!(
        lost >= 0 && key.1 <= input && key.2 <= output,
        "more counted than served: {key:?}"
    );
    ensure!(
        lost <= in_last_interval,
        "lost {lost} requests, more than the {in_last_interval} of the last flush interval"
    );
    drop(namespace);
    Ok(())
}

/// Sends requests through `gateway` until it has refused `refusals` in a row with `budget_exceeded`;
/// returns (admitted, refused).
async fn until_refused(
    http: reqwest::Client,
    gateway: SocketAddr,
    stream: bool,
    refusals: usize,
) -> Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut admitted, mut refused, mut in_a_row) = (0, 0, 0);
    while in_a_row < refusals {
        ensure!(
            Instant::now() < deadline,
            "the budget never stopped {gateway}"
        );
        match chat(&http, gateway, "openai-chat", stream).await? {
            200 => {
                admitted += 1;
                in_a_row = 0;
            }
            429 => {
                refused += 1;
                in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => bail!("unexpected status {other}"),
        }
    }
    Ok((admitted, refused))
}

#[tokio::test]
async fn three_gateways_under_concurrent_load_stay_within_the_budget_bound() -> Result<()> {
    let limit_usd = 0.02;
    let (client, namespace, mock, _operator, port) = setup("usage-gw-budget", limit_usd).await?;
    let ns = namespace.name().to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let gateways = [
        spawn_gateway(&ns, &url, "200ms", "gw-a")?,
        spawn_gateway(&ns, &url, "200ms", "gw-b")?,
        spawn_gateway(&ns, &url, "200ms", "gw-c")?,
    ];
    for gateway in &gateways {
        wait_serving(&http, gateway).await?;
    }
    let mut clients = Vec::new();
    for (i, gateway) in gateways.iter().enumerate() {
        for c in 0..4 {
            clients.push(tokio::spawn(until_refused(
                http.clone(),
                gateway.addr,
                (i + c) % 2 == 0,
                10,
            )));
        }
    }
    let (mut admitted, mut refused) = (0, 0);
    for client in clients {
        let (a, r) = client.await??;
        admitted += a;
        refused += r;
    }
    // Every admitted request settles and is reported; then status holds the final spend.
    let (requests, input, output) = upstream_totals(&mock);
    let spent_nano = input as u64 * INPUT_NANO + output as u64 * OUTPUT_NANO;
    let budgets: Api<Budget> = Api::namespaced(client.clone(), &ns);
    let status = wait_for("the final spend in Budget status", TIMEOUT, || async {
        let status = budgets.get("monthly").await?.status.unwrap_or_default();
        Ok((status.spent_usd == usd(spent_nano)).then_some(status))
    })
    .await
    .with_context(|| format!("upstream cost {}", usd(spent_nano)))?;
    let limit_nano = (limit_usd * 1e9) as u64;
    // One request's maximum cost: its prompt (under 40 tokens) and max_tokens (40) at the route's prices.
    let max_request = 40 * INPUT_NANO + 40 * OUTPUT_NANO;
    let bound = (limit_nano / 100).max(max_request);
    let overshoot = spent_nano.saturating_sub(limit_nano);
    eprintln!(
        "three gateways: {admitted} admitted ({requests} upstream), {refused} refused; spent ${:.6} of ${limit_usd}; overshoot ${:.6} (bound ${:.6}); state {:?}",
        usd(spent_nano),
        usd(overshoot),
        usd(bound),
        status.state
    );
    // The upstream also saw the one request per gateway that showed it serving.
    ensure!(
        requests as u64 == admitted + gateways.len() as u64,
        "admitted {admitted} (+ {} probes) but the upstream saw {requests}",
        gateways.len()
    );
    ensure!(
        overshoot <= bound,
        "overshoot {overshoot} nano-dollars past the bound {bound}"
    );
    ensure!(
        spent_nano >= limit_nano * 9 / 10,
        "the budget stopped traffic too early: {spent_nano}"
    );
    drop(namespace);
    Ok(())
}

#[tokio::test]
async fn a_failing_backend_shows_in_route_status_within_one_report_interval() -> Result<()> {
    let (client, namespace, mock, _operator, port) = setup("usage-gw-health", 100.0).await?;
    let ns = namespace.name().to_owned();
    // Primary fails every request with 500; the fallback answers.
    mock.add_rule(
        sluice_tests::mock::Rule::new(sluice_tests::mock::Behavior::status(500))
            .for_model("failing-model")
            .always(),
    );
    let pricing = json!({"inputPerMillion": 1.0, "outputPerMillion": 2.0});
    apply::<LLMRoute>(&client, json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
        "metadata": {"name": "health", "namespace": ns},
        "spec": {"gateway": ns, "model": "health-chat", "strategy": "priority-failover", "backends": [
            {"name": "primary", "provider": "openai", "model": "failing-model", "priority": 0, "endpoint": mock.openai_base_url(), "pricing": pricing, "credentialsRef": {"name": "providers", "key": "key"}},
            {"name": "fallback", "provider": "anthropic", "model": "claude-haiku-4-5", "priority": 1, "endpoint": mock.url(), "pricing": pricing, "credentialsRef": {"name": "providers", "key": "key"}}
        ]}})).await?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let flush = Duration::from_millis(200);
    let gateway = spawn_gateway(&ns, &url, "200ms", "gw-health")?;
    wait_serving(&http, &gateway).await?;
    let routes: Api<LLMRoute> = Api::namespaced(client.clone(), &ns);
    wait_for("the health route to be published", TIMEOUT, || async {
        Ok((chat(&http, gateway.addr, "health-chat", false).await? == 200).then_some(()))
    })
    .await?;
    for i in 0..10 {
        chat(&http, gateway.addr, "health-chat", i % 2 == 0).await?;
    }
    let traffic_done = Instant::now();
    let seen = Mutex::new(None);
    let status = wait_for(
        "the failing backend in LLMRoute status",
        TIMEOUT,
        || async {
            let status = routes.get("health").await?.status.unwrap_or_default();
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
            // The breaker opened: later intervals see no attempts on the backend, so the error rate
            // of the last interval may be unknown; the circuit, the last error and readiness tell.
            let failing = status.backends_ready.as_deref() == Some("1/2")
                && status.backends.iter().any(|b| {
                    b.name == "primary"
                        && b.circuit.as_deref() == Some("Open")
                        && b.last_error.is_some()
                        && b.last_error_time.is_some()
                });
            Ok(failing.then_some(status))
        },
    )
    .await
    .with_context(|| {
        format!(
            "route status {:?}; mock saw {:?}",
            seen.lock().unwrap_or_else(PoisonError::into_inner),
            mock.requests()
                .iter()
                .map(|r| (r.body["model"].clone(), r.outcome))
                .collect::<Vec<_>>()
        )
    })?;
    let lag = traffic_done.elapsed();
    let primary = status
        .backends
        .iter()
        .find(|b| b.name == "primary")
        .context("primary")?;
    eprintln!(
        "health: {primary:?} in status {lag:?} after the traffic (flush {flush:?}, status interval 1 s); backendsReady {:?}",
        status.backends_ready
    );
    ensure!(
        lag <= flush + Duration::from_secs(1) + Duration::from_millis(1_500),
        "one report interval plus one status interval (and a patch) expected; took {lag:?}"
    );
    drop(namespace);
    Ok(())
}
