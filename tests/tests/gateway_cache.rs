//! The exact-match response cache, end to end: the `sluice-gateway` binary in local mode in front of a
//! wire-faithful mock provider, counting what reaches the upstream.
//!
//! - What must and must not collide, across keys and namespaces (a table of requests, each with the
//!   expected `x-sluice-cache` status and whether the upstream was called).
//! - A streamed answer replayed from the cache is equivalent in content to the original, and an entry
//!   stored from a stream serves JSON clients too.
//! - Bypass headers, TTL expiry, metrics (hits, saved cost) and budgets: hits are not charged.
//! - Two gateway processes sharing one real `redis-server` share entries.

mod gateway_support;
mod policy_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use policy_support::{LocalGateway, PROVIDER_KEY, chat, metric_sum, metrics, provider_secret};
use serde_json::{Value, json};
use sluice_tests::mock::{Behavior, MockProvider};

fn manifests(mock: &MockProvider) -> String {
    let backend = format!(
        "[{{name: openai, provider: openai, model: gpt-4o-mini, endpoint: \"{}\", credentialsRef: {{name: providers, key: key}}}}]",
        mock.openai_base_url()
    );
    let route = |name: &str, namespace: &str, extra: &str| {
        format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  model: {name}\n  backends: {backend}\n{extra}"
        )
    };
    let key = |name: &str, namespace: &str| {
        format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: VirtualKey\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{}}\n"
        )
    };
    [
        provider_secret(),
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {name: monthly, namespace: demo}\nspec: {limitUSD: 1, window: monthly}\n".to_owned(),
        route(
            "per-key",
            "demo",
            "  cache: {ttl: 10m}\n  budgetRefs: [{name: monthly}]\n",
        ),
        route("per-namespace", "demo", "  cache: {scope: namespace}\n"),
        route("short", "demo", "  cache: {ttl: 1s}\n"),
        route("uncached", "demo", ""),
        route(
            "semantic",
            "demo",
            "  cache: {semantic: {embeddingModel: embed, threshold: 0.99}}\n",
        ),
        route("embed", "demo", ""),
        key("alice", "demo"),
        key("bob", "demo"),
        key("carol", "other"),
    ]
    .concat()
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = true.into();
    body
}

#[tokio::test]
async fn exact_match_cache_collides_only_where_it_must_and_hits_are_not_billed() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let gateway = LocalGateway::start(&manifests(&mock), &[]).await?;
    let process = &gateway.process;
    let alice = gateway.key("demo/alice")?;
    let bob = gateway.key("demo/bob")?;
    let carol = gateway.key("other/carol")?;

    let question = ask("per-key", "what is a sluice gate");
    let mut with_user = question.clone();
    with_user["user"] = "end-user-42".into();
    with_user["metadata"] = json!({"trace": "abc"});
    let mut warmer = question.clone();
    warmer["temperature"] = 0.9.into();
    let mut capped = question.clone();
    capped["max_tokens"] = 3.into();
    let mut alias_tools = question.clone();
    alias_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);

    // (case, who, request, request headers, expected x-sluice-cache, upstream called?)
    type Case<'a> = (
        &'a str,
        &'a str,
        Value,
        Vec<(&'a str, &'a str)>,
        &'a str,
        bool,
    );
    let table: Vec<Case> = vec![
        ("first ask", alice, question.clone(), vec![], "miss", true),
        ("same again", alice, question.clone(), vec![], "hit", false),
        (
            "output-neutral fields ignored",
            alice,
            with_user,
            vec![],
            "hit",
            false,
        ),
        (
            "streamed: replayed",
            alice,
            streamed(question.clone()),
            vec![],
            "hit",
            false,
        ),
        ("other sampling", alice, warmer, vec![], "miss", true),
        ("other output bound", alice, capped, vec![], "miss", true),
        (
            "tools change the answer",
            alice,
            alias_tools,
            vec![],
            "miss",
            true,
        ),
        (
            "other message",
            alice,
            ask("per-key", "what is a lock"),
            vec![],
            "miss",
            true,
        ),
        (
            "other key, same namespace: per-key scope",
            bob,
            question.clone(),
            vec![],
            "miss",
            true,
        ),
        (
            "bypass header",
            alice,
            question.clone(),
            vec![("x-sluice-cache", "bypass")],
            "bypass",
            true,
        ),
        (
            "no-store",
            alice,
            question.clone(),
            vec![("cache-control", "no-store")],
            "bypass",
            true,
        ),
        (
            "still cached after bypasses",
            alice,
            question.clone(),
            vec![],
            "hit",
            false,
        ),
        (
            "per-namespace: first",
            alice,
            ask("per-namespace", "q"),
            vec![],
            "miss",
            true,
        ),
        (
            "per-namespace: same namespace shares",
            bob,
            ask("per-namespace", "q"),
            vec![],
            "hit",
            false,
        ),
        (
            "per-namespace: other namespace does not",
            carol,
            ask("per-namespace", "q"),
            vec![],
            "miss",
            true,
        ),
        (
            "other route, same text",
            alice,
            ask("short", "what is a sluice gate"),
            vec![],
            "miss",
            true,
        ),
    ];
    let mut first_content = None;
    for (name, key, body, headers, expected, upstream) in table {
        let before = mock.requests().len();
        let answer = chat(process, key, &body, &headers).await?;
        ensure!(answer.status == 200, "{name}: {}", answer.text);
        ensure!(
            answer.header("x-sluice-cache") == Some(expected),
            "{name}: x-sluice-cache {:?}, expected {expected}",
            answer.header("x-sluice-cache")
        );
        let called = mock.requests().len() > before;
        ensure!(called == upstream, "{name}: upstream called: {called}");
        if body == question {
            let content = answer.content()?;
            ensure!(
                *first_content.get_or_insert_with(|| content.clone()) == content,
                "{name}: {content:?}"
            );
        }
        if name == "streamed: replayed" {
            ensure!(
                answer.text.trim_end().ends_with("data: [DONE]"),
                "{}",
                answer.text
            );
            ensure!(Some(answer.content()?) == first_content, "{}", answer.text);
        }
    }
    let uncached = chat(process, alice, &ask("uncached", "hi"), &[]).await?;
    ensure!(uncached.header("x-sluice-cache").is_none());

    // An answer that arrived as a stream is stored (once the stream ends) and serves JSON clients.
    let streamed_miss = chat(process, alice, &streamed(ask("per-key", "stream me")), &[]).await?;
    ensure!(streamed_miss.header("x-sluice-cache") == Some("miss"));
    let streamed_content = streamed_miss.content()?;
    let json_hit = eventually_hit(process, alice, &ask("per-key", "stream me")).await?;
    ensure!(json_hit.content()? == streamed_content);

    // Failures are never stored: the same request goes upstream again and then succeeds.
    let flaky = ask("per-key", "flaky question");
    mock.push(Behavior::status(400));
    let failed = chat(process, alice, &flaky, &[]).await?;
    ensure!(failed.status == 400, "{}", failed.text);
    ensure!(failed.error_code().is_some(), "{}", failed.text);
    ensure!(failed.header("x-sluice-cache") == Some("miss"));
    let retried = chat(process, alice, &flaky, &[]).await?;
    ensure!(retried.status == 200 && retried.header("x-sluice-cache") == Some("miss"));

    // TTL: the 1 s route misses again after its entry expired.
    let short = ask("short", "expire me");
    ensure!(
        chat(process, alice, &short, &[])
            .await?
            .header("x-sluice-cache")
            == Some("miss")
    );
    ensure!(
        chat(process, alice, &short, &[])
            .await?
            .header("x-sluice-cache")
            == Some("hit")
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ensure!(
        chat(process, alice, &short, &[])
            .await?
            .header("x-sluice-cache")
            == Some("miss")
    );

    // Hits are counted and their cost saved, but never spent: neither in cost metrics nor in budgets.
    let before = metrics(process).await?;
    let spent = |exposition: &str| {
        metric_sum(
            exposition,
            "sluice_budget_spent_ratio",
            &[r#"budget="demo/monthly""#],
        )
    };
    let cost = |exposition: &str| metric_sum(exposition, "sluice_cost_usd_total", &[]);
    ensure!(
        spent(&before) > 0.0,
        "the misses were not charged:\n{before}"
    );
    for _ in 0..5 {
        let hit = chat(process, alice, &question, &[]).await?;
        ensure!(hit.header("x-sluice-cache") == Some("hit"));
    }
    let after = metrics(process).await?;
    ensure!(
        spent(&after) == spent(&before),
        "hits were charged to the budget"
    );
    ensure!(cost(&after) == cost(&before), "hits were counted as cost");
    let hits = |exposition: &str| {
        metric_sum(
            exposition,
            "sluice_cache_lookups_total",
            &[r#"route="demo/per-key""#, r#"result="hit""#],
        )
    };
    ensure!(hits(&after) == hits(&before) + 5.0);
    let saved = |exposition: &str| metric_sum(exposition, "sluice_cache_saved_usd_total", &[]);
    ensure!(saved(&after) > saved(&before), "no saving recorded");
    Ok(())
}

#[tokio::test]
async fn the_semantic_layer_serves_equivalent_prompts_within_one_tenant_only() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let gateway = LocalGateway::start(&manifests(&mock), &[]).await?;
    let process = &gateway.process;
    let (alice, bob) = (gateway.key("demo/alice")?, gateway.key("demo/bob")?);
    let chats = || {
        mock.requests()
            .iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count()
    };
    let embeddings = || {
        mock.requests()
            .iter()
            .filter(|r| r.path.ends_with("/embeddings"))
            .count()
    };

    // The mock's embeddings are deterministic per text and unrelated across texts, so "equivalent" here
    // means equal once formatting is normalised — an exact-match miss that the semantic layer catches.
    let first = chat(process, alice, &ask("semantic", "What is  a Sluice?"), &[]).await?;
    ensure!(
        first.header("x-sluice-cache") == Some("miss"),
        "{}",
        first.text
    );
    ensure!((chats(), embeddings()) == (1, 1));
    let cases = [
        (
            "same meaning, other formatting",
            alice,
            "what is a sluice?\n",
            "hit",
            0,
        ),
        ("another tenant", bob, "what is a sluice?", "miss", 1),
        ("another question", alice, "what is a lock?", "miss", 1),
    ];
    for (name, key, text, expected, upstream) in cases {
        let before = chats();
        let answer = chat(process, key, &ask("semantic", text), &[]).await?;
        ensure!(answer.status == 200, "{name}: {}", answer.text);
        ensure!(
            answer.header("x-sluice-cache") == Some(expected),
            "{name}: {:?}",
            answer.header("x-sluice-cache")
        );
        ensure!(chats() - before == upstream, "{name}");
        if expected == "hit" {
            ensure!(answer.content()? == first.content()?, "{name}");
        }
    }
    let exposition = metrics(process).await?;
    for (result, expected) in [("hit", 1.0), ("miss", 3.0)] {
        let label = format!("result=\"{result}\"");
        let found = metric_sum(
            &exposition,
            "sluice_cache_semantic_lookups_total",
            &[r#"route="demo/semantic""#, &label],
        );
        ensure!(found == expected, "{result}: {found}");
    }
    Ok(())
}

/// Streams are stored when they end, in the background: the entry appears within a moment.
async fn eventually_hit(
    process: &gateway_support::GatewayProcess,
    key: &str,
    body: &Value,
) -> Result<policy_support::Answer> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let answer = chat(process, key, body, &[]).await?;
        if answer.header("x-sluice-cache") == Some("hit") {
            return Ok(answer);
        }
        ensure!(Instant::now() < deadline, "never became a hit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` (Debian's package, installed by scripts/tools.sh) on a free loopback port.
struct RedisServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_REDIS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .context("redis-server not found: run scripts/tools.sh (apt-get install redis-server) or set SLUICE_REDIS_SERVER")
}

async fn start_redis() -> Result<RedisServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = Command::new(redis_server_binary()?)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let server = RedisServer {
        child,
        url: format!("redis://127.0.0.1:{port}/"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server did not listen within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(server)
}

#[tokio::test]
async fn two_gateway_processes_share_entries_through_redis() -> Result<()> {
    let redis = start_redis().await?;
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let flags = ["--cache-redis-url", redis.url.as_str()];
    // Two replicas of one gateway: each generated its own key values, but a key's identity
    // (`namespace/name`), which scopes the entries, is the same on both.
    let first = LocalGateway::start(&manifests(&mock), &flags).await?;
    let replica = LocalGateway::start(&manifests(&mock), &flags).await?;
    let second = &replica.process;
    let alice = first.key("demo/alice")?;
    let alice_on_second = replica.key("demo/alice")?;

    let question = ask("per-key", "shared between replicas");
    let miss = chat(&first.process, alice, &question, &[]).await?;
    ensure!(
        miss.header("x-sluice-cache") == Some("miss"),
        "{}",
        miss.text
    );
    let hit = chat(second, alice_on_second, &question, &[]).await?;
    ensure!(hit.header("x-sluice-cache") == Some("hit"), "{}", hit.text);
    ensure!(hit.content()? == miss.content()?);
    let replayed = chat(second, alice_on_second, &streamed(question.clone()), &[]).await?;
    ensure!(replayed.header("x-sluice-cache") == Some("hit"));
    ensure!(replayed.content()? == miss.content()?);
    ensure!(
        mock.requests().len() == 1,
        "the second replica went upstream"
    );

    // Tenants stay apart in the shared store too.
    let other = chat(second, replica.key("demo/bob")?, &question, &[]).await?;
    ensure!(other.header("x-sluice-cache") == Some("miss"));
    ensure!(mock.requests().len() == 2);

    // Entries live in Redis, not in the process that stored them.
    first.stop()?;
    let after_stop = chat(second, alice_on_second, &question, &[]).await?;
    ensure!(after_stop.header("x-sluice-cache") == Some("hit"));
    ensure!(mock.requests().len() == 2);
    Ok(())
}
