//! The official Python SDKs (`openai`, `anthropic`, pinned by `scripts/tools.sh`) as clients of the real
//! `sluice-gateway` binary in local mode, in front of the wire-faithful mock speaking OpenAI, Anthropic
//! and Gemini. The assertions live in `tests/python/`; this test starts everything, runs pytest, and
//! fails with pytest's report and the gateway's log when any SDK test fails.

mod gateway_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use gateway_support::GatewayProcess;
use serde_json::json;
use sluice_tests::harness::repo_root;
use sluice_tests::mock::{Behavior, MockProvider, Rule};

const PROVIDER_KEY: &str = "sk-upstream-python-sdk-provider-key";
const APP_KEY: &str = "sk-sluice-python-app-0123456789abcdefghijklmn";
const SCOPED_KEY: &str = "sk-sluice-python-scoped-0123456789abcdefghij";
/// Small, so the 413 tests need no large payloads.
const MAX_BODY_BYTES: &str = "65536";

/// The venv with the pinned SDKs: `SLUICE_PYTHON_VENV`, else what `scripts/tools.sh` installs.
fn python_venv() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_PYTHON_VENV").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .output()
        .context("running scripts/tools.sh")?;
    ensure!(
        output.status.success(),
        "scripts/tools.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .find_map(|line| line.strip_prefix("export SLUICE_PYTHON_VENV="))
        .map(|dir| PathBuf::from(dir.trim_matches('\'')))
        .context("scripts/tools.sh printed no SLUICE_PYTHON_VENV")
}

fn route(name: &str, provider: &str, model: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: {name}, namespace: sdk}}
spec:
  model: {name}
  backends:
    - {{name: upstream, provider: {provider}, model: {model}, endpoint: "{endpoint}", credentialsRef: {{name: providers, key: key}}}}
{extra}"#
    )
}

fn manifests(mock: &MockProvider) -> String {
    let (openai, root) = (mock.openai_base_url(), mock.url());
    let mut text = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: providers, namespace: sdk}}
stringData: {{key: {PROVIDER_KEY}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: sdk}}
stringData: {{app: {APP_KEY}, scoped: {SCOPED_KEY}}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: sdk}}
spec: {{secretRef: {{name: keys, key: app}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: scoped, namespace: sdk}}
spec:
  secretRef: {{name: keys, key: scoped}}
  models: [openai-chat]
"#
    );
    for (name, provider, model, endpoint, extra) in [
        ("openai-chat", "openai", "gpt-4o", &openai, ""),
        ("claude-chat", "anthropic", "claude-sonnet-4-5", &root, ""),
        ("gemini-chat", "gemini", "gemini-2.5-flash", &root, ""),
        ("openai-tools", "openai", "gpt-4o-tools", &openai, ""),
        ("claude-tools", "anthropic", "claude-tools", &root, ""),
        ("gemini-tools", "gemini", "gemini-tools", &root, ""),
        (
            "limited",
            "openai",
            "rate-limited-upstream",
            &openai,
            "  retry: {attempts: 1}\n",
        ),
        ("embed", "openai", "text-embedding-3-small", &openai, ""),
    ] {
        text.push_str(&route(name, provider, model, endpoint, extra));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_and_anthropic_sdks_work_through_the_gateway() -> Result<()> {
    let venv = python_venv()?;
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);
    for model in ["gpt-4o-tools", "claude-tools", "gemini-tools"] {
        mock.add_rule(
            Rule::new(Behavior::tool_call("get_weather", json!({"city": "Rome"})))
                .for_model(model)
                .always(),
        );
    }
    mock.add_rule(
        Rule::new(Behavior::rate_limited())
            .for_model("rate-limited-upstream")
            .always(),
    );

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("sdk.yaml"), manifests(&mock))?;
    let folder = dir.path().to_str().context("temp dir path")?;
    let gateway = GatewayProcess::spawn(&["--local", folder, "--max-body-bytes", MAX_BODY_BYTES])?;
    let ready = gateway.wait_ready(Duration::from_secs(30)).await?;
    ensure!(ready["source"] == "local", "{ready}");

    let gateway_url = gateway.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "console_output_style=classic",
            ])
            .arg(repo_root().join("tests/python"))
            .env("SLUICE_GATEWAY_URL", gateway_url)
            .env("SLUICE_APP_KEY", APP_KEY)
            .env("SLUICE_SCOPED_KEY", SCOPED_KEY)
            .env("SLUICE_MAX_BODY_BYTES", MAX_BODY_BYTES)
            .output()
    })
    .await??;
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "pytest failed:\n{report}\n--- gateway log ---\n{}",
        gateway.logs()
    );
    ensure!(report.contains(" passed"), "pytest ran nothing:\n{report}");
    eprintln!("{}", report.trim());
    let readiness = gateway.readiness().await?;
    ensure!(readiness["lastError"].is_null(), "{readiness}");
    let mut gateway = gateway;
    let status = gateway.terminate(Duration::from_secs(10))?;
    ensure!(
        status.success(),
        "the gateway exited with {status} after SIGTERM"
    );
    let logs = gateway.logs();
    ensure!(
        !logs.contains(PROVIDER_KEY) && !logs.contains(APP_KEY) && !logs.contains(SCOPED_KEY),
        "a key reached the logs"
    );
    Ok(())
}
