//! The gateway in front of every provider: manifests compiled by the shared compiler, a gateway started
//! in-process on that snapshot, and the wire-faithful mock answering as OpenAI, Azure OpenAI, Anthropic,
//! Gemini and an OpenAI-compatible server. Both client surfaces (OpenAI chat completions and Anthropic
//! messages), streaming and not, text and tool calls, embeddings, and what reaches the upstream.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_crds::compile::compile;
use sluice_crds::manifests::parse_str;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_tests::mock::{Behavior, MockProvider, Provider, Rule};

const APP_KEY: &str = "sk-sluice-e2e-app-key-0123456789abcdefghij";
const PROVIDER_KEY: &str = "sk-upstream-provider-key-never-leaks";

/// Client model name, the mock provider it reaches, and the model (or deployment) the mock sees.
const ROUTES: [(&str, Provider, &str); 5] = [
    ("openai-chat", Provider::OpenAi, "gpt-4o"),
    ("azure-chat", Provider::Azure, "gpt4o-deployment"),
    ("anthropic-chat", Provider::Anthropic, "claude-sonnet-4-5"),
    ("gemini-chat", Provider::Gemini, "gemini-2.5-flash"),
    ("compatible-chat", Provider::OpenAi, "llama-3.1-8b"),
];

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
    - {{name: openai, provider: openai, model: gpt-4o, endpoint: "{openai}", credentialsRef: {{name: providers, key: key}}}}
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
metadata: {{name: anthropic, namespace: team}}
spec:
  model: anthropic-chat
  backends:
    - {{name: anthropic, provider: anthropic, model: claude-sonnet-4-5, endpoint: "{root}", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: gemini, namespace: team}}
spec:
  model: gemini-chat
  backends:
    - {{name: gemini, provider: gemini, model: gemini-2.5-flash, endpoint: "{root}/v1beta", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: compatible, namespace: team}}
spec:
  model: compatible-chat
  backends:
    - {{name: vllm, provider: openai-compatible, model: llama-3.1-8b, endpoint: "{openai}", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: embeddings, namespace: team}}
spec:
  model: embed
  backends:
    - {{name: openai, provider: openai, model: text-embedding-3-small, endpoint: "{openai}", credentialsRef: {{name: providers, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: gemini-embeddings, namespace: team}}
spec:
  model: gemini-embed
  backends:
    - {{name: gemini, provider: gemini, model: gemini-embedding-001, endpoint: "{root}", credentialsRef: {{name: providers, key: key}}}}
"#
    )
}

struct Setup {
    mock: MockProvider,
    gateway: Gateway,
    client: reqwest::Client,
}

impl Setup {
    async fn start() -> Result<Self> {
        let mock = MockProvider::start().await?;
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
        Ok(Self {
            mock,
            gateway,
            client: reqwest::Client::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr())
    }

    async fn openai(&self, body: &Value) -> Result<(u16, String)> {
        let response = self
            .client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(APP_KEY)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    async fn anthropic(&self, body: &Value) -> Result<(u16, String)> {
        let response = self
            .client
            .post(self.url("/v1/messages"))
            .header("x-api-key", APP_KEY)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }
}

const PROMPT: &str = "Please repeat these seven words back";

fn openai_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]})
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 200, "stream": stream, "system": "You are terse.",
        "messages": [{"role": "user", "content": PROMPT}]})
}

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn sse_data(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).with_context(|| format!("not JSON: {data}")))
        .collect()
}

/// What the mock saw for the latest request to `provider`.
fn upstream_request(
    mock: &MockProvider,
    provider: Provider,
) -> Result<sluice_tests::mock::RecordedRequest> {
    mock.requests_for(provider)
        .pop()
        .with_context(|| format!("{provider} received nothing"))
}

#[tokio::test]
async fn openai_surface_chat_reaches_every_provider_in_its_own_format() -> Result<()> {
    let setup = Setup::start().await?;
    for (model, provider, upstream_model) in ROUTES {
        let (status, text) = setup.openai(&openai_body(model, false)).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let body: Value = serde_json::from_str(&text)?;
        ensure!(
            body["choices"][0]["message"]["content"] == PROMPT,
            "{model}: {body}"
        );
        ensure!(
            body["choices"][0]["finish_reason"] == "stop",
            "{model}: {body}"
        );
        // The mock counts words: 3 system + 6 user words in, the echo's 6 words out.
        ensure!(
            body["usage"]["prompt_tokens"] == 9 && body["usage"]["completion_tokens"] == 6,
            "{model}: {body}"
        );
        let seen = upstream_request(&setup.mock, provider)?;
        let auth_header = match provider {
            Provider::Azure => seen.header("api-key").map(str::to_owned),
            Provider::Anthropic => seen.header("x-api-key").map(str::to_owned),
            Provider::Gemini => seen
                .header("x-goog-api-key")
                .map(str::to_owned)
                .or_else(|| seen.query_param("key")),
            Provider::OpenAi => seen.header("authorization").map(str::to_owned),
        };
        ensure!(
            auth_header
                .as_deref()
                .is_some_and(|v| v.ends_with(PROVIDER_KEY)),
            "{model}: provider key not sent: {auth_header:?}"
        );
        let sent_model = seen.body["model"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| seen.route.as_ref().and_then(|r| r.path_model.clone()));
        ensure!(
            sent_model.as_deref() == Some(upstream_model) || seen.path.contains(upstream_model),
            "{model}: {} {:?}",
            seen.path,
            sent_model
        );
        ensure!(!text.contains(PROVIDER_KEY));
    }
    Ok(())
}

#[tokio::test]
async fn openai_surface_streams_from_every_provider_with_usage_on_request() -> Result<()> {
    let setup = Setup::start().await?;
    for (model, _, _) in ROUTES {
        let (status, text) = setup.openai(&openai_body(model, true)).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        ensure!(text.trim_end().ends_with("data: [DONE]"), "{model}: {text}");
        let chunks = sse_data(&text)?;
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        ensure!(content == PROMPT, "{model}: {content:?}");
        let usage = chunks
            .iter()
            .find(|c| c["usage"].is_object())
            .with_context(|| format!("{model}: no usage chunk"))?;
        ensure!(usage["choices"] == json!([]), "{model}: {usage}");
        ensure!(usage["usage"]["completion_tokens"] == 6, "{model}: {usage}");
        let finish = chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .unwrap_or_default();
        ensure!(finish == "stop", "{model}: finish {finish:?}");
    }
    Ok(())
}

#[tokio::test]
async fn tool_calls_come_back_whole_and_streamed_from_every_provider() -> Result<()> {
    let setup = Setup::start().await?;
    for (model, _, upstream_model) in ROUTES {
        setup.mock.add_rule(
            Rule::new(Behavior::tool_call("get_weather", json!({"city": "Rome"})))
                .for_model(upstream_model)
                .times(2),
        );
        let mut body = openai_body(model, false);
        body["tools"] = weather_tool_openai();
        let (status, text) = setup.openai(&body).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let response: Value = serde_json::from_str(&text)?;
        let call = &response["choices"][0]["message"]["tool_calls"][0];
        ensure!(
            call["function"]["name"] == "get_weather",
            "{model}: {response}"
        );
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("null"))?;
        ensure!(arguments == json!({"city": "Rome"}), "{model}: {arguments}");
        ensure!(
            response["choices"][0]["finish_reason"] == "tool_calls",
            "{model}: {response}"
        );
        ensure!(
            call["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{model}: tool call without id"
        );

        body["stream"] = json!(true);
        let (status, text) = setup.openai(&body).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let mut name = String::new();
        let mut arguments = String::new();
        for chunk in sse_data(&text)? {
            for delta in chunk["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                ensure!(delta["index"] == 0, "{model}: {delta}");
                name.push_str(delta["function"]["name"].as_str().unwrap_or_default());
                arguments.push_str(delta["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        ensure!(name == "get_weather", "{model}: streamed name {name:?}");
        ensure!(
            serde_json::from_str::<Value>(&arguments)? == json!({"city": "Rome"}),
            "{model}: streamed {arguments:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn anthropic_surface_serves_every_provider_text_tools_and_streams() -> Result<()> {
    let setup = Setup::start().await?;
    for (model, _, upstream_model) in ROUTES {
        let (status, text) = setup.anthropic(&anthropic_body(model, false)).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let message: Value = serde_json::from_str(&text)?;
        ensure!(
            message["type"] == "message" && message["role"] == "assistant",
            "{model}: {message}"
        );
        ensure!(
            message["content"][0]["type"] == "text" && message["content"][0]["text"] == PROMPT,
            "{model}: {message}"
        );
        ensure!(message["stop_reason"] == "end_turn", "{model}: {message}");
        ensure!(message["usage"]["output_tokens"] == 6, "{model}: {message}");

        let (status, text) = setup.anthropic(&anthropic_body(model, true)).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        ensure!(
            events.first() == Some(&"message_start") && events.last() == Some(&"message_stop"),
            "{model}: {events:?}"
        );
        let streamed: String = sse_data(&text)?
            .iter()
            .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        ensure!(streamed == PROMPT, "{model}: {streamed:?}");

        setup.mock.add_rule(
            Rule::new(Behavior::tool_call("get_weather", json!({"city": "Rome"})))
                .for_model(upstream_model),
        );
        let mut with_tools = anthropic_body(model, false);
        with_tools["tools"] = json!([{"name": "get_weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
        let (status, text) = setup.anthropic(&with_tools).await?;
        ensure!(status == 200, "{model}: {status} {text}");
        let message: Value = serde_json::from_str(&text)?;
        let tool_use = message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["type"] == "tool_use");
        let Some(tool_use) = tool_use else {
            bail!("{model}: no tool_use block: {message}")
        };
        ensure!(
            tool_use["name"] == "get_weather" && tool_use["input"] == json!({"city": "Rome"}),
            "{model}: {tool_use}"
        );
        ensure!(message["stop_reason"] == "tool_use", "{model}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn embeddings_from_openai_and_gemini_come_back_in_openai_shape() -> Result<()> {
    let setup = Setup::start().await?;
    for model in ["embed", "gemini-embed"] {
        let response = setup
            .client
            .post(setup.url("/v1/embeddings"))
            .bearer_auth(APP_KEY)
            .json(&json!({"model": model, "input": ["first text", "second"]}))
            .send()
            .await?;
        ensure!(response.status() == 200, "{model}: {}", response.status());
        let body: Value = response.json().await?;
        ensure!(body["object"] == "list", "{model}: {body}");
        let data = body["data"].as_array().context("data")?;
        ensure!(data.len() == 2 && data[1]["index"] == 1, "{model}: {body}");
        ensure!(
            data[0]["embedding"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{model}: {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_client_disconnect_mid_stream_reaches_the_provider() -> Result<()> {
    let setup = Setup::start().await?;
    for (model, provider, upstream_model) in [ROUTES[0], ROUTES[2], ROUTES[3]] {
        setup.mock.add_rule(
            Rule::new(Behavior::generated(40).with_chunk_delay(Duration::from_millis(100)))
                .for_provider(provider)
                .for_model(upstream_model),
        );
        let before = setup.mock.stats().cancelled;
        let response = setup
            .client
            .post(setup.url("/v1/chat/completions"))
            .bearer_auth(APP_KEY)
            .json(&openai_body(model, true))
            .send()
            .await?;
        let mut frames = response.bytes_stream();
        frames.next().await.context("no first frame")??;
        drop(frames);
        setup
            .mock
            .wait_for_stats(|stats| stats.cancelled > before, Duration::from_secs(3))
            .await
            .map_err(|stats| {
                anyhow::anyhow!("{model}: the provider never saw the cancel: {stats:?}")
            })?;
    }
    Ok(())
}
