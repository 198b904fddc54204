//! The `sluice-gateway` binary in local mode as a user runs it: a folder of manifests, a generated key
//! kept in a private state file, edits picked up without a restart, a broken edit refused while the last
//! good configuration keeps serving, and a graceful exit on SIGTERM.

mod gateway_support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gateway_support::GatewayProcess;
use serde_json::{Value, json};
use sluice_tests::mock::MockProvider;

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
