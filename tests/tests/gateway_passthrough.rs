//! Same-wire pass-through: a non-streaming answer from an OpenAI-shaped upstream (OpenAI, Azure OpenAI,
//! an OpenAI-compatible server) reaches an OpenAI-surface client byte for byte, still metered from its
//! usage; the Anthropic surface on the same route still gets the translated answer.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sluice_crds::compile::compile;
use sluice_crds::manifests::parse_str;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_tests::mock::{FIXED_PROMPT_TOKENS, MockConfig, MockProvider};

const APP_KEY: &str = "sk-sluice-e2e-app-key-0123456789abcdefghij";
const PROVIDER_KEY: &str = "sk-upstream-provider-key-never-leaks";

fn manifests(mock: &MockProvider) -> String {
    let openai = mock.openai_base_url();
    let root = mock.url();
    let credentials = sluice_tests::manifests::team_credentials(PROVIDER_KEY, APP_KEY);
    format!(
        r#"{credentials}
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: openai, namespace: team}}
spec:
  model: openai-chat
  backends:
    - {{name: openai, provider: openai, model: gpt-4o-mini, endpoint: "{openai}", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: azure, namespace: team}}
spec:
  model: azure-chat
  backends:
    - name: azure
      provider: azure-openai
      model: gpt-4o
      endpoint: "{root}"
      azure: {{deployment: gpt4o-deployment}}
      credentialsRef: {{name: providers, key: key}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: compatible, namespace: team}}
spec:
  model: compatible-chat
  backends:
    - {{name: vllm, provider: openai-compatible, model: llama-3.1-8b, endpoint: "{openai}", credentialsRef: {{name: providers, key: key}}}}
"#
    )
}

async fn start() -> Result<(MockProvider, Gateway)> {
    // Fixed mode: every answer is rendered once, so the same request answered directly gives the same bytes.
    let mock = MockProvider::start_with(MockConfig {
        fixed: true,
        ..MockConfig::default()
    })
    .await?;
    mock.expect_api_key(PROVIDER_KEY);
    let parsed = parse_str(std::path::Path::new("e2e.yaml"), &manifests(&mock))?;
    let compiled = compile(&parsed.inputs("default", chrono::Utc::now()));
    for (object, outcome) in &compiled.outcomes {
        ensure!(
            outcome.published(),
            "{object} was not compiled: {outcome:?}"
        );
    }
    let options = GatewayOptions::new("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?);
    let gateway =
        Gateway::start(options, ConfigSource::Static(Box::new(compiled.snapshot))).await?;
    Ok((mock, gateway))
}

/// Replays the mock's latest request straight to the mock: the upstream's own answer, as it sends it.
async fn upstream_answer(client: &reqwest::Client, mock: &MockProvider) -> Result<Vec<u8>> {
    let seen = mock.last_request().context("the mock received nothing")?;
    let query = seen.query.map(|q| format!("?{q}")).unwrap_or_default();
    let mut request = client
        .post(format!("{}{}{query}", mock.url(), seen.path))
        .body(seen.raw_body.clone());
    for name in ["authorization", "api-key", "content-type"] {
        if let Some(value) = seen.headers.get(name) {
            request = request.header(name, value);
        }
    }
    let response = request.send().await?;
    ensure!(response.status() == 200, "direct: {}", response.status());
    Ok(response.bytes().await?.to_vec())
}

#[tokio::test]
async fn openai_wire_answers_reach_the_client_byte_for_byte() -> Result<()> {
    let (mock, gateway) = start().await?;
    let client = reqwest::Client::new();
    for model in ["openai-chat", "azure-chat", "compatible-chat"] {
        let response = client
            .post(format!("http://{}/v1/chat/completions", gateway.addr()))
            .bearer_auth(APP_KEY)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]}))
            .send()
            .await?;
        ensure!(response.status() == 200, "{model}: {}", response.status());
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        ensure!(
            content_type.as_deref() == Some("application/json"),
            "{model}: {content_type:?}"
        );
        let through_gateway = response.bytes().await?.to_vec();
        let direct = upstream_answer(&client, &mock).await?;
        ensure!(
            through_gateway == direct,
            "{model}: the body changed on the way\n gateway: {}\nupstream: {}",
            String::from_utf8_lossy(&through_gateway),
            String::from_utf8_lossy(&direct)
        );
        let body: Value = serde_json::from_slice(&through_gateway)?;
        ensure!(
            body["usage"]["prompt_tokens"] == FIXED_PROMPT_TOKENS,
            "{model}: {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn passed_through_answers_are_still_metered_from_their_usage() -> Result<()> {
    let (_mock, gateway) = start().await?;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/v1/chat/completions", gateway.addr()))
        .bearer_auth(APP_KEY)
        .json(&json!({"model": "openai-chat", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await?;
    ensure!(response.status() == 200);
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    let completion_tokens = body["usage"]["completion_tokens"]
        .as_u64()
        .context("usage.completion_tokens")?;
    let metrics = client
        .get(format!("http://{}/metrics", gateway.admin_addr()))
        .send()
        .await?
        .text()
        .await?;
    let counted = |kind: &str| -> Option<f64> {
        let series = format!(
            r#"sluice_tokens_total{{route="team/openai",backend="openai",provider="openai",kind="{kind}"}} "#
        );
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str())?.trim().parse().ok())
    };
    ensure!(
        counted("input") == Some(FIXED_PROMPT_TOKENS as f64)
            && counted("output") == Some(completion_tokens as f64),
        "token counters do not match the upstream's usage:\n{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn the_anthropic_surface_on_an_openai_route_is_still_translated() -> Result<()> {
    let (mock, gateway) = start().await?;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/v1/messages", gateway.addr()))
        .header("x-api-key", APP_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "openai-chat", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await?;
    ensure!(response.status() == 200, "{}", response.status());
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    ensure!(
        body["type"] == "message" && body["usage"]["input_tokens"] == FIXED_PROMPT_TOKENS,
        "{body}"
    );
    ensure!(mock.last_request().is_some());
    Ok(())
}
