//! The `sluice-gateway` binary in local mode as a user runs it: a folder of manifests, a generated key
//! kept in a private state file, edits picked up without a restart, a broken edit refused while the last
//! good configuration keeps serving, and a graceful exit on SIGTERM. And the repository's `examples/`
//! served against the mock provider with `--local-endpoint-override`, as `scripts/demo.sh` does.

mod gateway_support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gateway_support::GatewayProcess;
use serde_json::{Value, json};
use sluice_tests::harness::repo_root;
use sluice_tests::mock::{Behavior, MockConfig, MockProvider, Provider, Rule};

const PROVIDER_KEY: &str = "sk-upstream-local-mode-provider-key";

fn manifests(mock: &MockProvider, aliases: &str) -> String {
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
  aliases: [{aliases}]
  backends:
    - {{name: openai, provider: openai, model: gpt-4o, endpoint: "{}", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: laptop, namespace: demo}}
spec: {{}}
"#,
        mock.openai_base_url()
    )
}

/// Writes the file the way editors do (a new file renamed over the old one).
fn save(dir: &Path, text: &str) -> Result<()> {
    let tmp = dir.join(".routes.yaml.swp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join("routes.yaml"))?;
    Ok(())
}

async fn chat(gateway: &GatewayProcess, key: &str, model: &str) -> Result<u16> {
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn eventually(
    what: &str,
    gateway: &GatewayProcess,
    mut check: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await? {
        ensure!(
            Instant::now() < deadline,
            "{what} did not happen within 5 s; log:\n{}",
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn local_mode_generates_a_key_once_follows_edits_and_refuses_broken_ones() -> Result<()> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let state_file = state.path().join("keys.json");
    save(dir.path(), &manifests(&mock, ""))?;
    let args = [
        "--local",
        dir.path().to_str().context("path")?,
        "--local-state",
        state_file.to_str().context("path")?,
    ];

    let mut gateway = GatewayProcess::spawn(&args)?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    let stored: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
    let key = stored["keys"]["demo/laptop"]
        .as_str()
        .context("no generated key in the state file")?
        .to_owned();
    ensure!(key.starts_with("sk-sluice-"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        ensure!(
            std::fs::metadata(&state_file)?.permissions().mode() & 0o077 == 0,
            "the state file is readable by others"
        );
    }
    ensure!(chat(&gateway, &key, "gpt-4o").await? == 200);
    ensure!(chat(&gateway, &key, "fast").await? == 404);

    // Idle means idle: reading the folder must not count as a change of it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", gateway.admin_addr))
        .await?
        .text()
        .await?;
    let loads: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_config_reload_total{source=\"local\""))
        .collect();
    ensure!(
        loads == [r#"sluice_config_reload_total{source="local",result="success"} 1"#],
        "recompiled while idle: {loads:?}"
    );

    save(dir.path(), &manifests(&mock, "fast"))?;
    eventually("the new alias", &gateway, async || {
        Ok(chat(&gateway, &key, "fast").await? == 200)
    })
    .await?;

    save(
        dir.path(),
        "apiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {name: chat\n",
    )?;
    eventually("the broken edit being reported", &gateway, async || {
        Ok(gateway.readiness().await?["lastError"].is_string())
    })
    .await?;
    let readiness = gateway.readiness().await?;
    ensure!(
        readiness["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("routes.yaml"),
        "{readiness}"
    );
    ensure!(
        readiness["ready"] == true,
        "the last good configuration still serves: {readiness}"
    );
    ensure!(chat(&gateway, &key, "fast").await? == 200);

    save(dir.path(), &manifests(&mock, "fast, quick"))?;
    eventually("recovery", &gateway, async || {
        Ok(gateway.readiness().await?["lastError"].is_null())
    })
    .await?;
    ensure!(chat(&gateway, &key, "quick").await? == 200);

    let status = gateway.terminate(Duration::from_secs(10))?;
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    let logs = gateway.logs();
    ensure!(
        !logs.contains(&key),
        "the generated key must not reach the logs"
    );
    ensure!(
        logs.contains(&key[..14]),
        "the log names the key by its prefix:\n{logs}"
    );

    // A restart reuses the stored key.
    let restarted = GatewayProcess::spawn(&args)?;
    restarted.wait_ready(Duration::from_secs(30)).await?;
    ensure!(chat(&restarted, &key, "quick").await? == 200);
    let again: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
    ensure!(again == stored, "the key was regenerated");
    Ok(())
}

/// The provider keys in examples/00-provider-secrets.yaml, which the mock then requires of each provider.
const EXAMPLE_PROVIDER_KEYS: [(Provider, &str); 4] = [
    (Provider::OpenAi, "sk-example-openai-replace-me"),
    (Provider::Anthropic, "sk-ant-example-replace-me"),
    (Provider::Gemini, "example-gemini-key-replace-me"),
    (Provider::Azure, "example-azure-key-replace-me"),
];

/// A key for every model: the examples' own key (team-a-ci) may not use gpt-4o-mini.
const LAPTOP_KEY: &str = "apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {name: laptop, namespace: team-a}
spec: {description: every route of the examples}
";

/// One chat completion with extra headers; returns the status and the backend that answered
/// (`x-sluice-backend`). A 200 must carry the mock's echo of the prompt.
async fn chat_via(
    gateway: &GatewayProcess,
    key: &str,
    model: &str,
    prompt: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-sluice-debug", "1")
        .json(&json!({"model": model, "messages": [{"role": "user", "content": prompt}]}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let backend = response
        .headers()
        .get("x-sluice-backend")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await?;
    if status == 200 {
        ensure!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|text| text.contains(prompt)),
            "the mock echoes the prompt: {body}"
        );
    }
    Ok((status, backend))
}

#[tokio::test]
async fn examples_are_served_against_the_mock_provider_through_every_route() -> Result<()> {
    // Lenient: the vLLM backend of the examples sends no key, as a keyless vLLM expects.
    let mock = MockProvider::start_with(MockConfig {
        strict: false,
        ..MockConfig::default()
    })
    .await?;
    for (provider, key) in EXAMPLE_PROVIDER_KEYS {
        mock.expect_api_key_for(provider, key);
    }
    let examples = repo_root().join("examples");
    let routes = sluice_crds::manifests::load_dir(&examples)?.routes;
    ensure!(routes.len() >= 3, "examples/ has {} routes", routes.len());
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().context("name")?))?;
        }
    }
    std::fs::write(dir.path().join("99-laptop-key.yaml"), LAPTOP_KEY)?;
    let state = tempfile::tempdir()?;
    let state_file = state.path().join("keys.json");
    let (base, openai) = (mock.url(), mock.openai_base_url());
    let overrides = [
        format!("openai={openai}"),
        format!("openai-compatible={openai}"),
        format!("anthropic={base}"),
        format!("gemini={base}"),
        format!("azure-openai={base}"),
    ];
    let mut args = vec![
        "--local",
        dir.path().to_str().context("path")?,
        "--local-state",
        state_file.to_str().context("path")?,
    ];
    for pair in &overrides {
        args.extend(["--local-endpoint-override", pair.as_str()]);
    }
    let gateway = GatewayProcess::spawn(&args)?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    let stored: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
    let ci_key = stored["keys"]["team-a/team-a-ci"]
        .as_str()
        .context("no key generated for the example VirtualKey")?;
    let laptop_key = stored["keys"]["team-a/laptop"]
        .as_str()
        .context("no key generated for the laptop key")?;

    // Every example route completes a request, answered by one of its own backends.
    for route in &routes {
        let model = &route.spec.model;
        let (status, backend) =
            chat_via(&gateway, laptop_key, model, &format!("hello {model}"), &[]).await?;
        ensure!(
            status == 200,
            "route {model}: {status}; log:\n{}",
            gateway.logs()
        );
        ensure!(
            route.spec.backends.iter().any(|b| b.name == backend),
            "route {model} answered by {backend:?}"
        );
    }

    // chat-default with the examples' own key: OpenAI first, Anthropic when OpenAI fails.
    let first = chat_via(&gateway, ci_key, "chat-default", "hello openai", &[]).await?;
    ensure!(first == (200, "openai".into()), "{first:?}");
    let last = mock.last_request().context("the mock saw nothing")?;
    ensure!(last.provider() == Some(Provider::OpenAi) && last.body["model"] == "gpt-4o");
    mock.add_rule(
        Rule::new(Behavior::status(503))
            .for_provider(Provider::OpenAi)
            .always(),
    );
    let fallback = chat_via(&gateway, ci_key, "gpt-4o", "hello anthropic", &[]).await?;
    ensure!(fallback == (200, "anthropic".into()), "{fallback:?}");
    let last = mock.last_request().context("the mock saw nothing")?;
    ensure!(
        last.provider() == Some(Provider::Anthropic) && last.body["model"] == "claude-sonnet-4-5"
    );
    mock.clear_script();

    // summarize: split between the vLLM server and Gemini, sticky per end user.
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..64 {
        let user = format!("user-{user}");
        let (status, backend) = chat_via(
            &gateway,
            laptop_key,
            "summarize",
            &format!("text of {user}"),
            &[("x-user-id", &user)],
        )
        .await?;
        ensure!(status == 200, "summarize for {user}: {status}");
        seen.insert(backend);
        if seen.len() == 2 {
            break;
        }
    }
    ensure!(
        seen == ["gemini-flash".to_owned(), "vllm-llama".to_owned()].into(),
        "{seen:?}"
    );
    let gemini = mock
        .requests_for(Provider::Gemini)
        .into_iter()
        .find(|request| request.path.contains("gemini-2.0-flash"))
        .context("no request reached the Gemini mock")?;
    ensure!(gemini.header("x-goog-api-key") == Some("example-gemini-key-replace-me"));

    // gpt-4o-mini: the Azure deployment; outside the CI key's models.
    ensure!(
        chat_via(&gateway, ci_key, "gpt-4o-mini", "not mine", &[])
            .await?
            .0
            == 403
    );
    let azure = chat_via(&gateway, laptop_key, "gpt-4o-mini", "hello azure", &[]).await?;
    ensure!(azure == (200, "azure-eastus".into()), "{azure:?}");
    let azure = mock.last_request().context("the mock saw nothing")?;
    ensure!(azure.provider() == Some(Provider::Azure), "{}", azure.path);
    ensure!(
        azure.path == "/openai/deployments/gpt-4o-mini-prod/chat/completions"
            && azure.query_param("api-version").as_deref() == Some("2024-10-21"),
        "{} {:?}",
        azure.path,
        azure.query
    );

    let logs = gateway.logs();
    ensure!(
        logs.contains("local mode: backends of these providers use these endpoints"),
        "the overrides are logged at start:\n{logs}"
    );
    for (_, key) in EXAMPLE_PROVIDER_KEYS {
        ensure!(!logs.contains(key), "a provider key reached the logs");
    }
    Ok(())
}
