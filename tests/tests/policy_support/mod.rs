//! Shared by the cache and guardrail tests: a `sluice-gateway` process in local mode over a folder of
//! manifests, the virtual keys it generated, OpenAI-shaped calls with their headers, and `/metrics` reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::gateway_support::GatewayProcess;

/// Provider key the mocks expect.
pub const PROVIDER_KEY: &str = "sk-upstream-policy-tests";

/// The Secret every manifest set starts with (namespace `demo`).
pub fn provider_secret() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: providers, namespace: demo}}\nstringData: {{key: {PROVIDER_KEY}}}\n"
    )
}

/// A gateway serving `manifests`, with the keys it generated (`namespace/name` → key).
pub struct LocalGateway {
    pub process: GatewayProcess,
    pub keys: BTreeMap<String, String>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl LocalGateway {
    /// Starts a gateway on `manifests` with `extra` flags and waits until it is ready.
    pub async fn start(manifests: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let state = tempfile::tempdir()?;
        let state_file = state.path().join("keys.json");
        std::fs::write(dir.path().join("manifests.yaml"), manifests)?;
        let process = spawn(dir.path(), &state_file, extra).await?;
        let readiness = process.readiness().await?;
        ensure!(
            readiness["lastError"].is_null(),
            "the manifests were not served cleanly: {readiness}"
        );
        let stored: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
        let keys = stored["keys"]
            .as_object()
            .context("no keys in the state file")?
            .iter()
            .filter_map(|(id, key)| Some((id.clone(), key.as_str()?.to_owned())))
            .collect();
        Ok(Self {
            process,
            keys,
            _dirs: (dir, state),
        })
    }

    /// Stops the gateway with SIGTERM and checks that it drained and exited cleanly.
    pub fn stop(mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_secs(30))?;
        ensure!(status.success(), "exit status {status}");
        Ok(())
    }

    pub fn key(&self, id: &str) -> Result<&str> {
        self.keys
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("no generated key {id}"))
    }
}

async fn spawn(dir: &Path, state_file: &Path, extra: &[&str]) -> Result<GatewayProcess> {
    let mut args = vec![
        "--local",
        dir.to_str().context("path")?,
        "--local-state",
        state_file.to_str().context("path")?,
    ];
    args.extend_from_slice(extra);
    let process = GatewayProcess::spawn(&args)?;
    process.wait_ready(Duration::from_secs(30)).await?;
    Ok(process)
}

/// One response: status, headers and body text.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.text).with_context(|| format!("not JSON: {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The assistant text of a chat completion, or of an OpenAI event stream.
    pub fn content(&self) -> Result<String> {
        if self.text.starts_with("data:") {
            let mut text = String::new();
            for line in self.text.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    break;
                }
                let event: Value = serde_json::from_str(data)?;
                if let Some(delta) = event["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(delta);
                }
            }
            return Ok(text);
        }
        Ok(self.json()?["choices"][0]["message"]["content"]
            .as_str()
            .context("no content")?
            .to_owned())
    }

    /// The OpenAI error code.
    pub fn error_code(&self) -> Option<String> {
        self.json().ok()?["error"]["code"]
            .as_str()
            .map(str::to_owned)
    }
}

/// `POST /v1/chat/completions` with `body` and extra headers.
pub async fn chat(
    gateway: &GatewayProcess,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<Answer> {
    chat_with(&reqwest::Client::new(), gateway, key, body, headers).await
}

/// [`chat`] on `client`, whose connections are reused across calls.
pub async fn chat_with(
    client: &reqwest::Client,
    gateway: &GatewayProcess,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<Answer> {
    let mut request = client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    Ok(Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await?,
    })
}

/// The `/metrics` exposition.
pub async fn metrics(gateway: &GatewayProcess) -> Result<String> {
    Ok(
        reqwest::get(format!("http://{}/metrics", gateway.admin_addr))
            .await?
            .text()
            .await?,
    )
}

/// The sum of every sample of `family` whose labels contain all of `labels` (`name="value"` pairs).
pub fn metric_sum(exposition: &str, family: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            (name == family && labels.iter().all(|l| series.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
