//! The mock providers speak each provider's wire format, record what they receive, and inject faults.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use pretty_assertions::assert_eq;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sluice_tests::mock::{
    Behavior, Endpoint, MockConfig, MockProvider, Outcome, Provider, RetryAfter, Rule, ToolCall,
    Usage,
};

const KEY: &str = "sk-test-0123456789";
const WAIT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// How a provider's requests are addressed and authenticated.
#[derive(Clone, Copy)]
struct Call {
    provider: Provider,
}

impl Call {
    fn url(self, mock: &MockProvider, stream: bool) -> String {
        match self.provider {
            Provider::OpenAi => format!("{}/chat/completions", mock.openai_base_url()),
            Provider::Azure => format!(
                "{}/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
                mock.url()
            ),
            Provider::Anthropic => format!("{}/v1/messages", mock.url()),
            Provider::Gemini if stream => {
                format!(
                    "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                    mock.url()
                )
            }
            Provider::Gemini => format!(
                "{}/v1beta/models/gemini-2.5-flash:generateContent",
                mock.url()
            ),
        }
    }

    fn headers(self, key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        };
        match self.provider {
            Provider::OpenAi => set("authorization", &format!("Bearer {key}")),
            Provider::Azure => set("api-key", key),
            Provider::Anthropic => {
                set("x-api-key", key);
                set("anthropic-version", "2023-06-01");
            }
            Provider::Gemini => set("x-goog-api-key", key),
        }
        headers
    }

    /// A one-turn conversation asking `text`, in the provider's request shape.
    fn body(self, text: &str, stream: bool) -> Value {
        match self.provider {
            Provider::OpenAi | Provider::Azure => json!({"model": "gpt-4o", "stream": stream,
                "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": text}]}),
            Provider::Anthropic => {
                json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
                "system": "Be terse.", "messages": [{"role": "user", "content": text}]})
            }
            Provider::Gemini => json!({"systemInstruction": {"parts": [{"text": "Be terse."}]},
                "contents": [{"role": "user", "parts": [{"text": text}]}]}),
        }
    }

    async fn send(
        self,
        mock: &MockProvider,
        text: &str,
        stream: bool,
    ) -> Result<reqwest::Response> {
        Ok(client()
            .post(self.url(mock, stream))
            .headers(self.headers(KEY))
            .json(&self.body(text, stream))
            .send()
            .await?)
    }
}

fn call(provider: Provider) -> Call {
    Call { provider }
}

/// SSE events as (event name, data), accepting `\n` and `\r\n` line ends.
fn sse_events(text: &str) -> Vec<(Option<String>, String)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

fn json_events(text: &str) -> Result<Vec<Value>> {
    sse_events(text)
        .into_iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(_, data)| {
            serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))
        })
        .collect()
}

async fn started() -> Result<MockProvider> {
    let mock = MockProvider::start().await?;
    mock.expect_api_key(KEY);
    Ok(mock)
}

// ---------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_chat_echoes_the_last_user_turn_with_word_count_usage() -> Result<()> {
    let mock = started().await?;
    let response = call(Provider::OpenAi)
        .send(&mock, "What is the weather in Paris?", false)
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-ratelimit-reset-requests"], "6ms");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await?;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "What is the weather in Paris?", "refusal": null, "annotations": []})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 2 + 6);
    assert_eq!(body["usage"]["completion_tokens"], 6);
    assert_eq!(body["usage"]["total_tokens"], 14);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.provider(), Some(Provider::OpenAi));
    assert_eq!(request.endpoint(), Some(Endpoint::ChatCompletions));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        request.body["messages"][1]["content"],
        "What is the weather in Paris?"
    );
    assert_eq!(request.outcome, Outcome::Status(200));
    assert_eq!(request.usage, Some(Usage::new(8, 6)));
    Ok(())
}

#[tokio::test]
async fn openai_stream_sends_usage_only_when_asked() -> Result<()> {
    let mock = started().await?;
    for include_usage in [true, false] {
        let mut body = call(Provider::OpenAi).body("one two three", true);
        body["stream_options"] = json!({"include_usage": include_usage});
        let response = client()
            .post(call(Provider::OpenAi).url(&mock, true))
            .headers(call(Provider::OpenAi).headers(KEY))
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()?
                .starts_with("text/event-stream")
        );
        let text = response.text().await?;
        let events = sse_events(&text);
        assert!(
            events.iter().all(|(name, _)| name.is_none()),
            "OpenAI streams carry no event names"
        );
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let chunks = json_events(&text)?;
        let id = &chunks[0]["id"];
        assert!(
            chunks
                .iter()
                .all(|c| &c["id"] == id && c["object"] == "chat.completion.chunk")
        );
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "", "refusal": null})
        );
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "one two three");
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")]);
        if include_usage {
            let last = chunks.last().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["completion_tokens"], 3);
            assert_eq!(last["usage"]["prompt_tokens"], 5);
            assert!(
                chunks[..chunks.len() - 1]
                    .iter()
                    .all(|c| c["usage"].is_null() && c.get("usage").is_some())
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }
    Ok(())
}

#[tokio::test]
async fn openai_stream_delivers_tool_calls_as_indexed_fragments() -> Result<()> {
    let mock = started().await?;
    mock.push(
        Behavior::text("Let me check.")
            .and_tool_call("get_weather", json!({"city": "Rome"}))
            .and_tool_call("get_time", json!({"tz": "CET"})),
    );
    let text = call(Provider::OpenAi)
        .send(&mock, "weather?", true)
        .await?
        .text()
        .await?;
    let chunks = json_events(&text)?;
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for delta in chunks.iter().flat_map(|c| {
        c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }) {
        let index = delta["index"].as_u64().unwrap() as usize;
        if let Some(id) = delta["id"].as_str() {
            assert_eq!(
                index,
                calls.len(),
                "the first delta of each call carries its id"
            );
            assert_eq!(delta["type"], "function");
            calls.push((
                id.to_owned(),
                delta["function"]["name"].as_str().unwrap().to_owned(),
                String::new(),
            ));
        }
        calls[index]
            .2
            .push_str(delta["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2)?,
        json!({"city": "Rome"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2)?,
        json!({"tz": "CET"})
    );
    assert_ne!(calls[0].0, calls[1].0);
    let last_choice = chunks
        .iter()
        .rev()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(last_choice["choices"][0]["finish_reason"], "tool_calls");
    Ok(())
}

#[tokio::test]
async fn openai_embeddings_and_models() -> Result<()> {
    let mock = started().await?;
    let post = |body: Value| {
        client()
            .post(format!("{}/embeddings", mock.openai_base_url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let floats: Value = post(json!({"model": "text-embedding-3-small", "input": ["hello world", "bye"], "dimensions": 8})).await?.json().await?;
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(floats["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let encoded: Value = post(json!({"model": "text-embedding-3-small", "input": "hello world", "dimensions": 8, "encoding_format": "base64"})).await?.json().await?;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())?;
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded, expected, "same text, same vector, either encoding");
    let empty = post(json!({"model": "text-embedding-3-small", "input": []})).await?;
    assert_eq!(empty.status(), 400);

    let models: Value = client()
        .get(format!("{}/models", mock.openai_base_url()))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(models["object"], "list");
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o" && m["object"] == "model")
    );
    Ok(())
}

#[tokio::test]
async fn openai_rejects_invalid_conversations_like_the_real_api() -> Result<()> {
    let mock = started().await?;
    let post = |body: Value| {
        client()
            .post(format!("{}/chat/completions", mock.openai_base_url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let orphan = post(json!({"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]})).await?;
    assert_eq!(orphan.status(), 400);
    let body: Value = orphan.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let unparsable = client()
        .post(format!("{}/chat/completions", mock.openai_base_url()))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await?;
    assert_eq!(unparsable.status(), 400);
    let unknown = client()
        .post(format!("{}/completions", mock.openai_base_url()))
        .bearer_auth(KEY)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await?;
    assert_eq!(
        body["error"]["message"],
        "Invalid URL (POST /v1/completions)"
    );
    Ok(())
}

// ---------------------------------------------------------------- Azure

#[tokio::test]
async fn azure_adds_content_filter_fields_and_an_empty_first_chunk() -> Result<()> {
    let mock = started().await?;
    let response = call(Provider::Azure)
        .send(&mock, "hello azure", false)
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("apim-request-id"));
    let body: Value = response.json().await?;
    assert_eq!(
        body["model"], "gpt-4o-2024-08-06",
        "Azure names the underlying model, not the deployment"
    );
    assert_eq!(
        body["prompt_filter_results"][0]["content_filter_results"]["hate"]["severity"],
        "safe"
    );
    assert_eq!(
        body["choices"][0]["content_filter_results"]["violence"]["filtered"],
        false
    );
    assert_eq!(body["choices"][0]["message"]["content"], "hello azure");
    let request = mock.last_request().unwrap();
    assert_eq!(
        request.route.as_ref().unwrap().path_model.as_deref(),
        Some("prod-4o")
    );
    assert_eq!(
        request.query_param("api-version").as_deref(),
        Some("2024-10-21")
    );

    let text = call(Provider::Azure)
        .send(&mock, "hello azure", true)
        .await?
        .text()
        .await?;
    let chunks = json_events(&text)?;
    assert_eq!(chunks[0]["choices"], json!([]));
    assert_eq!(chunks[0]["id"], "");
    assert!(chunks[0]["prompt_filter_results"].is_array());
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "hello azure");
    Ok(())
}

#[tokio::test]
async fn azure_requires_a_supported_api_version() -> Result<()> {
    let mock = started().await?;
    let base = format!("{}/openai/deployments/prod-4o/chat/completions", mock.url());
    let body = call(Provider::Azure).body("hi", false);
    let missing = client()
        .post(&base)
        .header("api-key", KEY)
        .json(&body)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await?,
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );
    let bad = client()
        .post(format!("{base}?api-version=0613"))
        .header("api-key", KEY)
        .json(&body)
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await?,
        json!({"error": {"code": "BadRequest", "message": "API version not supported"}})
    );
    let embeddings: Value = client()
        .post(format!(
            "{}/openai/deployments/emb/embeddings?api-version=2024-10-21",
            mock.url()
        ))
        .header("api-key", KEY)
        .json(&json!({"input": "hello"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        embeddings["data"][0]["embedding"].as_array().unwrap().len(),
        16
    );
    Ok(())
}

// ---------------------------------------------------------------- Anthropic

#[tokio::test]
async fn anthropic_message_has_split_usage_and_stop_reason() -> Result<()> {
    let mock = started().await?;
    mock.push(
        Behavior::text("Checking.")
            .and_tool_call_spec(ToolCall {
                id: Some("toolu_fixed".into()),
                ..ToolCall::new("get_weather", json!({"city": "Rome"}))
            })
            .with_usage(Usage {
                prompt_tokens: 250,
                completion_tokens: 30,
                cached_tokens: 200,
                reasoning_tokens: 0,
            }),
    );
    let response = call(Provider::Anthropic)
        .send(&mock, "weather?", false)
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    assert!(
        response
            .headers()
            .contains_key("anthropic-ratelimit-requests-reset")
    );
    let body: Value = response.json().await?;
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_fixed", "name": "get_weather", "input": {"city": "Rome"}}])
    );
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["usage"]["input_tokens"], 50);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 200);
    assert_eq!(body["usage"]["output_tokens"], 30);
    Ok(())
}

#[tokio::test]
async fn anthropic_stream_follows_the_documented_event_order() -> Result<()> {
    let mock = started().await?;
    mock.push(
        Behavior::text("Let me check.").and_tool_call("get_weather", json!({"city": "Rome"})),
    );
    let text = call(Provider::Anthropic)
        .send(&mock, "weather in Rome?", true)
        .await?
        .text()
        .await?;
    let events = sse_events(&text);
    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data = json_events(&text)?;
    for ((name, _), value) in events.iter().zip(&data) {
        assert_eq!(
            value["type"],
            name.as_deref().unwrap(),
            "data.type equals the event name"
        );
    }
    assert_eq!(
        data[0]["message"]["usage"]["input_tokens"],
        2 + 3,
        "system and user words"
    );
    assert_eq!(data[0]["message"]["content"], json!([]));
    let text_out: String = data
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text_out, "Let me check.");
    assert_eq!(
        data[7]["content_block"],
        json!({"type": "tool_use", "id": data[7]["content_block"]["id"], "name": "get_weather", "input": {}})
    );
    assert_eq!(data[7]["index"], 1);
    let json_out: String = data
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_out)?,
        json!({"city": "Rome"})
    );
    assert_eq!(data[13]["delta"]["stop_reason"], "tool_use");
    assert_eq!(data[13]["usage"]["output_tokens"], 3 + 2);
    Ok(())
}

#[tokio::test]
async fn anthropic_requires_version_header_and_max_tokens() -> Result<()> {
    let mock = started().await?;
    let url = format!("{}/v1/messages", mock.url());
    let no_version = client()
        .post(&url)
        .header("x-api-key", KEY)
        .json(&call(Provider::Anthropic).body("hi", false))
        .send()
        .await?;
    assert_eq!(no_version.status(), 400);
    let body: Value = no_version.json().await?;
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
    let mut without_max = call(Provider::Anthropic).body("hi", false);
    without_max.as_object_mut().unwrap().remove("max_tokens");
    let response = client()
        .post(&url)
        .headers(call(Provider::Anthropic).headers(KEY))
        .json(&without_max)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await?["error"]["message"],
        "max_tokens: Field required"
    );

    let models: Value = client()
        .get(format!("{}/v1/models", mock.url()))
        .headers(call(Provider::Anthropic).headers(KEY))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(
        mock.requests().last().unwrap().provider(),
        Some(Provider::Anthropic)
    );
    Ok(())
}

#[tokio::test]
async fn anthropic_accepts_the_current_sdk_headers_and_rejects_malformed_versions() -> Result<()> {
    let mock = started().await?;
    let url = format!("{}/v1/messages", mock.url());
    let body = call(Provider::Anthropic).body("hi", false);
    // anthropic-sdk-python 2.x sends the key as a bearer token with a newer dated version.
    let sdk_style = client()
        .post(&url)
        .bearer_auth(KEY)
        .header("anthropic-version", "2026-10-21")
        .json(&body)
        .send()
        .await?;
    assert_eq!(sdk_style.status(), 200);
    let duplicated = client()
        .post(&url)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01, 2023-06-01")
        .json(&body)
        .send()
        .await?;
    assert_eq!(duplicated.status(), 400);
    assert_eq!(
        duplicated.json::<Value>().await?["error"]["message"],
        "anthropic-version: \"2023-06-01, 2023-06-01\" is not a valid version"
    );
    Ok(())
}

// ---------------------------------------------------------------- Gemini

#[tokio::test]
async fn gemini_generate_content_and_function_calls() -> Result<()> {
    let mock = started().await?;
    let response = call(Provider::Gemini)
        .send(&mock, "hello gemini", false)
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(
        body["candidates"][0]["content"],
        json!({"parts": [{"text": "hello gemini"}], "role": "model"})
    );
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    assert_eq!(body["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 2);
    assert_eq!(body["usageMetadata"]["totalTokenCount"], 6);
    assert_eq!(body["modelVersion"], "gemini-2.5-flash");

    // The google-genai SDK calls the same methods under /v1.
    mock.push(Behavior::tool_call("get_weather", json!({"city": "Rome"})));
    let body: Value = client()
        .post(format!(
            "{}/v1/models/gemini-2.5-flash:generateContent",
            mock.url()
        ))
        .headers(call(Provider::Gemini).headers(KEY))
        .json(&call(Provider::Gemini).body("weather?", false))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        body["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}])
    );
    assert_eq!(
        body["candidates"][0]["finishReason"], "STOP",
        "Gemini has no tool-call finish reason"
    );
    Ok(())
}

#[tokio::test]
async fn gemini_sse_stream_uses_crlf_and_running_usage() -> Result<()> {
    let mock = started().await?;
    let response = call(Provider::Gemini)
        .send(&mock, "alpha beta gamma", true)
        .await?;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await?;
    assert!(text.contains("\r\n\r\n"));
    assert!(!text.contains("[DONE]"));
    let chunks = json_events(&text)?;
    assert_eq!(chunks.len(), 3);
    let counts: Vec<u64> = chunks
        .iter()
        .map(|c| c["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    assert!(
        chunks[..2]
            .iter()
            .all(|c| c["candidates"][0].get("finishReason").is_none())
    );
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "alpha beta gamma");

    // Without alt=sse the stream is a JSON array; the key may come as a query parameter.
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?key={KEY}",
        mock.url()
    );
    let array: Value = client()
        .post(url)
        .json(&call(Provider::Gemini).body("alpha beta", true))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(array.as_array().unwrap().len(), 2);
    assert_eq!(
        mock.last_request().unwrap().query_param("key").as_deref(),
        Some(KEY)
    );
    Ok(())
}

#[tokio::test]
async fn gemini_embeddings_and_conversation_rules() -> Result<()> {
    let mock = started().await?;
    let url = |method: &str| format!("{}/v1beta/models/gemini-embedding-001:{method}", mock.url());
    let single: Value = client()
        .post(url("embedContent"))
        .header("x-goog-api-key", KEY)
        .json(&json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(single["embedding"]["values"].as_array().unwrap().len(), 4);
    let batch: Value = client().post(url("batchEmbedContents")).header("x-goog-api-key", KEY)
        .json(&json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}))
        .send().await?.json().await?;
    assert_eq!(
        batch["embeddings"][0], single["embedding"],
        "results keep request order and are deterministic"
    );
    assert_eq!(batch["embeddings"].as_array().unwrap().len(), 2);

    let not_alternating = json!({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]}]});
    let response = client()
        .post(call(Provider::Gemini).url(&mock, false))
        .headers(call(Provider::Gemini).headers(KEY))
        .json(&not_alternating)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await?["error"]["status"],
        "INVALID_ARGUMENT"
    );
    Ok(())
}

// ---------------------------------------------------------------- Authentication

#[tokio::test]
async fn wrong_or_missing_keys_get_each_providers_auth_error() -> Result<()> {
    let mock = started().await?;
    for provider in Provider::ALL {
        let c = call(provider);
        let wrong = client()
            .post(c.url(&mock, false))
            .headers(c.headers("sk-wrong-key-999999"))
            .json(&c.body("hi", false))
            .send()
            .await?;
        let status = wrong.status().as_u16();
        let text = wrong.text().await?;
        assert!(
            !text.contains("sk-wrong-key-999999"),
            "{provider}: the key is never echoed in full"
        );
        let body: Value = serde_json::from_str(&text)?;
        match provider {
            Provider::OpenAi => {
                assert_eq!(status, 401);
                assert_eq!(body["error"]["code"], "invalid_api_key");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("sk-************9999")
                );
            }
            Provider::Azure => {
                assert_eq!(status, 401);
                assert_eq!(body["error"]["code"], "401");
            }
            Provider::Anthropic => {
                assert_eq!(status, 401);
                assert_eq!(
                    body["error"],
                    json!({"type": "authentication_error", "message": "invalid x-api-key"})
                );
            }
            Provider::Gemini => {
                assert_eq!(status, 400, "Gemini answers a bad key with 400");
                assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");
            }
        }
        let mut headers = c.headers(KEY);
        headers.remove("authorization");
        headers.remove("api-key");
        headers.remove("x-api-key");
        headers.remove("x-goog-api-key");
        let missing = client()
            .post(c.url(&mock, false))
            .headers(headers)
            .json(&c.body("hi", false))
            .send()
            .await?;
        let expected = if provider == Provider::Gemini {
            403
        } else {
            401
        };
        assert_eq!(missing.status().as_u16(), expected, "{provider}");
    }
    Ok(())
}

#[tokio::test]
async fn per_provider_keys_override_the_shared_key() -> Result<()> {
    let mock = started().await?;
    mock.expect_api_key_for(Provider::Anthropic, "sk-ant-only");
    let c = call(Provider::Anthropic);
    let shared_key = client()
        .post(c.url(&mock, false))
        .headers(c.headers(KEY))
        .json(&c.body("hi", false))
        .send()
        .await?;
    assert_eq!(shared_key.status(), 401);
    let own_key = client()
        .post(c.url(&mock, false))
        .headers(c.headers("sk-ant-only"))
        .json(&c.body("hi", false))
        .send()
        .await?;
    assert_eq!(own_key.status(), 200);
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "hi", false)
            .await?
            .status(),
        200
    );
    Ok(())
}

// ---------------------------------------------------------------- Scripting

#[tokio::test]
async fn rules_target_providers_models_and_counts() -> Result<()> {
    let mock = started().await?;
    mock.push_for(Provider::Gemini, Behavior::status(503));
    mock.add_rule(
        Rule::new(Behavior::text("from the rule"))
            .for_model("gpt-4o")
            .times(2),
    );
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "x", false)
            .await?
            .json::<Value>()
            .await?["choices"][0]["message"]["content"],
        "from the rule"
    );
    assert_eq!(
        call(Provider::Gemini)
            .send(&mock, "x", false)
            .await?
            .status(),
        503
    );
    assert_eq!(
        call(Provider::Gemini)
            .send(&mock, "x", false)
            .await?
            .status(),
        200
    );
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "x", false)
            .await?
            .json::<Value>()
            .await?["choices"][0]["message"]["content"],
        "from the rule"
    );
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "x", false)
            .await?
            .json::<Value>()
            .await?["choices"][0]["message"]["content"],
        "x"
    );
    assert_eq!(mock.pending_rules(), 0);
    mock.set_default(Behavior::generated(3));
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "x", false)
            .await?
            .json::<Value>()
            .await?["choices"][0]["message"]["content"],
        "lorem ipsum dolor"
    );
    Ok(())
}

#[tokio::test]
async fn max_tokens_truncates_the_answer_with_each_providers_length_reason() -> Result<()> {
    let mock = started().await?;
    for (provider, reason) in [
        (Provider::OpenAi, "length"),
        (Provider::Anthropic, "max_tokens"),
        (Provider::Gemini, "MAX_TOKENS"),
    ] {
        let c = call(provider);
        let mut body = c.body("one two three four five", false);
        match provider {
            Provider::OpenAi => body["max_completion_tokens"] = json!(2),
            Provider::Anthropic => body["max_tokens"] = json!(2),
            _ => body["generationConfig"] = json!({"maxOutputTokens": 2}),
        }
        let answer: Value = client()
            .post(c.url(&mock, false))
            .headers(c.headers(KEY))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let (text, finish) = match provider {
            Provider::OpenAi => (
                &answer["choices"][0]["message"]["content"],
                &answer["choices"][0]["finish_reason"],
            ),
            Provider::Anthropic => (&answer["content"][0]["text"], &answer["stop_reason"]),
            _ => (
                &answer["candidates"][0]["content"]["parts"][0]["text"],
                &answer["candidates"][0]["finishReason"],
            ),
        };
        assert_eq!(text, "one two", "{provider}");
        assert_eq!(finish, reason, "{provider}");
    }
    Ok(())
}

// ---------------------------------------------------------------- Faults

#[tokio::test]
async fn server_errors_have_each_providers_shape() -> Result<()> {
    let mock = started().await?;
    for provider in Provider::ALL {
        for status in [500, 503, 502] {
            mock.push(Behavior::status(status));
            let response = call(provider).send(&mock, "hi", false).await?;
            assert_eq!(response.status().as_u16(), status, "{provider}");
            let content_type = response.headers()["content-type"].to_str()?.to_owned();
            let text = response.text().await?;
            if status == 502 {
                assert_eq!(
                    content_type, "text/html",
                    "{provider}: a 502 comes from the proxy in front"
                );
                assert!(text.contains("502 Bad Gateway"));
                continue;
            }
            let body: Value = serde_json::from_str(&text)?;
            match provider {
                Provider::OpenAi | Provider::Azure => {
                    assert_eq!(body["error"]["type"], "server_error", "{provider} {status}")
                }
                Provider::Anthropic => assert_eq!(body["error"]["type"], "api_error"),
                Provider::Gemini => assert_eq!(
                    body["error"]["status"],
                    if status == 500 {
                        "INTERNAL"
                    } else {
                        "UNAVAILABLE"
                    }
                ),
            }
        }
    }
    mock.push(Behavior::status(529));
    let overloaded: Value = call(Provider::Anthropic)
        .send(&mock, "hi", false)
        .await?
        .json()
        .await?;
    assert_eq!(overloaded["error"]["type"], "overloaded_error");
    Ok(())
}

#[tokio::test]
async fn rate_limits_carry_retry_after_in_seconds_as_a_date_or_not_at_all() -> Result<()> {
    let mock = started().await?;
    let date = SystemTime::now() + Duration::from_secs(30);
    for provider in Provider::ALL {
        mock.push(Behavior::rate_limited_retry_after(RetryAfter::Seconds(7)));
        mock.push(Behavior::rate_limited_retry_after(RetryAfter::HttpDate(
            date,
        )));
        mock.push(Behavior::rate_limited());
        let seconds = call(provider).send(&mock, "hi", false).await?;
        assert_eq!(seconds.status(), 429);
        assert_eq!(seconds.headers()["retry-after"], "7", "{provider}");
        let body: Value = seconds.json().await?;
        match provider {
            Provider::OpenAi => assert_eq!(body["error"]["code"], "rate_limit_exceeded"),
            Provider::Azure => assert_eq!(body["error"]["code"], "429"),
            Provider::Anthropic => assert_eq!(body["error"]["type"], "rate_limit_error"),
            Provider::Gemini => {
                assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
                assert_eq!(body["error"]["details"][1]["retryDelay"], "7s");
            }
        }
        let dated = call(provider).send(&mock, "hi", false).await?;
        let value = dated.headers()["retry-after"].to_str()?;
        assert!(
            value.ends_with(" GMT") && value.len() == 29,
            "{provider}: IMF-fixdate, got {value}"
        );
        let bare = call(provider).send(&mock, "hi", false).await?;
        assert_eq!(bare.status(), 429);
        assert!(!bare.headers().contains_key("retry-after"), "{provider}");
    }
    let openai = {
        mock.push(Behavior::rate_limited());
        call(Provider::OpenAi).send(&mock, "hi", false).await?
    };
    assert_eq!(openai.headers()["x-ratelimit-remaining-requests"], "0");
    Ok(())
}

#[tokio::test]
async fn context_length_errors_have_each_providers_shape() -> Result<()> {
    let mock = started().await?;
    for provider in Provider::ALL {
        mock.push(Behavior::context_length_exceeded());
        let response = call(provider).send(&mock, "hi", false).await?;
        assert_eq!(response.status(), 400, "{provider}");
        let body: Value = response.json().await?;
        match provider {
            Provider::OpenAi | Provider::Azure => {
                assert_eq!(body["error"]["code"], "context_length_exceeded")
            }
            Provider::Anthropic => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("prompt is too long")
            ),
            Provider::Gemini => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("exceeds the maximum number of tokens")
            ),
        }
    }
    // A context window: "Be terse." plus the question must fit in 4 words.
    let small = MockProvider::start_with(MockConfig {
        context_window: Some(4),
        ..MockConfig::default()
    })
    .await?;
    assert_eq!(
        call(Provider::Anthropic)
            .send(&small, "a b", false)
            .await?
            .status(),
        200
    );
    let too_long = call(Provider::Anthropic)
        .send(&small, "a b c", false)
        .await?;
    assert_eq!(too_long.status(), 400);
    assert_eq!(
        too_long.json::<Value>().await?["error"]["message"],
        "prompt is too long: 200005 tokens > 200000 maximum"
    );
    Ok(())
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() -> Result<()> {
    let mock = started().await?;
    mock.push(Behavior::reset());
    let result = call(Provider::OpenAi).send(&mock, "hi", false).await;
    assert!(
        result.is_err(),
        "a reset is a transport error, not a status"
    );
    assert_eq!(mock.requests()[0].outcome, Outcome::Reset);
    assert_eq!(mock.stats().resets, 1);
    assert_eq!(
        call(Provider::OpenAi)
            .send(&mock, "hi", false)
            .await?
            .status(),
        200,
        "the next request is served"
    );
    Ok(())
}

/// Reads a body until it ends or fails: (bytes received, whether it failed).
async fn read_until_end(response: reqwest::Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), false)
}

#[tokio::test]
async fn partial_stream_then_reset_for_every_provider() -> Result<()> {
    let mock = started().await?;
    for provider in Provider::ALL {
        mock.push(Behavior::reset_after_events(3));
        let response = call(provider)
            .send(&mock, "one two three four five six", true)
            .await?;
        assert_eq!(response.status(), 200);
        let (text, failed) = read_until_end(response).await;
        assert!(
            failed,
            "{provider}: the stream must end in an error, got {text:?}"
        );
        assert_eq!(sse_events(&text).len(), 3, "{provider}: {text:?}");
    }
    mock.push(Behavior::reset_after_events(0));
    let response = call(Provider::OpenAi).send(&mock, "hi", false).await?;
    let (text, failed) = read_until_end(response).await;
    assert!(
        failed && serde_json::from_str::<Value>(&text).is_err(),
        "a non-stream body is cut in half"
    );
    Ok(())
}

#[tokio::test]
async fn error_events_inside_a_200_stream() -> Result<()> {
    let mock = started().await?;
    for provider in Provider::ALL {
        for position in [0, 2] {
            mock.push(Behavior::error_event_after(position));
            let response = call(provider)
                .send(&mock, "one two three four", true)
                .await?;
            assert_eq!(response.status(), 200);
            let text = response.text().await?;
            let events = sse_events(&text);
            assert_eq!(events.len(), position + 1, "{provider}: {text}");
            let (name, data) = events.last().unwrap();
            let error: Value = serde_json::from_str(data)?;
            match provider {
                Provider::OpenAi | Provider::Azure => {
                    assert_eq!(error["error"]["type"], "server_error")
                }
                Provider::Anthropic => {
                    assert_eq!(name.as_deref(), Some("error"));
                    assert_eq!(
                        error,
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    );
                }
                Provider::Gemini => assert_eq!(error["error"]["status"], "UNAVAILABLE"),
            }
        }
    }
    mock.push(Behavior::error_event_after(1));
    assert_eq!(
        call(Provider::Anthropic)
            .send(&mock, "hi", false)
            .await?
            .status(),
        529,
        "without a stream the error is the status"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_json_bodies_and_events() -> Result<()> {
    let mock = started().await?;
    mock.push(Behavior::malformed_json());
    let response = call(Provider::OpenAi).send(&mock, "hello", false).await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    assert!(text.starts_with('{') && serde_json::from_str::<Value>(&text).is_err());
    mock.push(Behavior::malformed_json());
    let text = call(Provider::Anthropic)
        .send(&mock, "hello", true)
        .await?
        .text()
        .await?;
    let events = sse_events(&text);
    assert_eq!(events.len(), 2);
    assert!(serde_json::from_str::<Value>(&events[0].1).is_ok());
    assert!(serde_json::from_str::<Value>(&events[1].1).is_err());
    Ok(())
}

#[tokio::test]
async fn latency_chunk_delay_and_drip_slow_the_response() -> Result<()> {
    let mock = started().await?;
    mock.push(Behavior::echo().with_latency(Duration::from_millis(300)));
    let start = Instant::now();
    call(Provider::OpenAi).send(&mock, "hi", false).await?;
    assert!(start.elapsed() >= Duration::from_millis(300));

    mock.push(Behavior::echo().with_chunk_delay(Duration::from_millis(40)));
    let start = Instant::now();
    let response = call(Provider::Anthropic)
        .send(&mock, "a b c d e", true)
        .await?;
    let mut stream = response.bytes_stream();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunk?;
        arrivals.push(start.elapsed());
    }
    assert!(
        arrivals.len() >= 8,
        "events arrive one by one: {arrivals:?}"
    );
    assert!(
        *arrivals.last().unwrap() >= Duration::from_millis(40 * 9),
        "{arrivals:?}"
    );

    mock.push(Behavior::echo().with_drip(16, Duration::from_millis(10)));
    let start = Instant::now();
    let response = call(Provider::OpenAi).send(&mock, "drip", false).await?;
    let body: Value = response.json().await?;
    assert_eq!(body["choices"][0]["message"]["content"], "drip");
    assert!(
        start.elapsed() >= Duration::from_millis(10 * 20),
        "a ~500-byte body in 16-byte slices"
    );
    Ok(())
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted_as_cancelled() -> Result<()> {
    let mock = started().await?;
    mock.push(Behavior::generated(200).with_chunk_delay(Duration::from_millis(20)));
    let response = call(Provider::OpenAi).send(&mock, "go", true).await?;
    let mut stream = response.bytes_stream();
    stream.next().await.context("first chunk")??;
    mock.wait_for_stats(|s| s.streams_active == 1, WAIT)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    drop(stream);
    let stats = mock
        .wait_for_stats(
            |s| s.cancelled == 1 && s.streams_active == 0 && s.connections_open == 0,
            WAIT,
        )
        .await
        .map_err(|s| anyhow::anyhow!("the mock did not notice the disconnect: {s:?}"))?;
    assert_eq!(stats.streams_completed, 0);
    assert_eq!(stats.requests_in_flight, 0);
    Ok(())
}

#[tokio::test]
async fn client_giving_up_on_a_hang_is_counted_as_cancelled() -> Result<()> {
    let mock = started().await?;
    mock.push(Behavior::hang());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()?;
    let c = call(Provider::Gemini);
    let result = client
        .post(c.url(&mock, false))
        .headers(c.headers(KEY))
        .json(&c.body("hi", false))
        .send()
        .await;
    ensure!(
        result.as_ref().is_err_and(reqwest::Error::is_timeout),
        "expected a client timeout"
    );
    mock.wait_for_stats(|s| s.cancelled == 1 && s.requests_in_flight == 0, WAIT)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert_eq!(mock.requests()[0].outcome, Outcome::Hang);
    Ok(())
}

#[tokio::test]
async fn completed_streams_and_connections_are_counted() -> Result<()> {
    let mock = started().await?;
    let client = client();
    for _ in 0..3 {
        let c = call(Provider::OpenAi);
        client
            .post(c.url(&mock, true))
            .headers(c.headers(KEY))
            .json(&c.body("a b", true))
            .send()
            .await?
            .text()
            .await?;
    }
    let stats = mock
        .wait_for_stats(|s| s.streams_completed == 3, WAIT)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert_eq!(
        stats.connections_total, 1,
        "keep-alive reuses one connection"
    );
    assert_eq!(stats.cancelled, 0);
    assert_eq!(stats.requests_total, 3);
    Ok(())
}

// ---------------------------------------------------------------- Fixed mode and the binary

#[tokio::test]
async fn fixed_mode_serves_precomputed_answers_in_every_format() -> Result<()> {
    let mock = MockProvider::start_with(MockConfig {
        fixed: true,
        tokens: Some(4),
        record: false,
        ..MockConfig::default()
    })
    .await?;
    mock.expect_api_key(KEY);
    for provider in Provider::ALL {
        let json_answer = call(provider).send(&mock, "ignored", false).await?;
        assert_eq!(json_answer.status(), 200, "{provider}");
        let body: Value = json_answer.json().await?;
        let text = match provider {
            Provider::OpenAi | Provider::Azure => body["choices"][0]["message"]["content"].clone(),
            Provider::Anthropic => body["content"][0]["text"].clone(),
            Provider::Gemini => body["candidates"][0]["content"]["parts"][0]["text"].clone(),
        };
        assert_eq!(text, "lorem ipsum dolor sit", "{provider}");
        let stream = call(provider)
            .send(&mock, "ignored", true)
            .await?
            .text()
            .await?;
        assert!(json_events(&stream)?.len() >= 4, "{provider}");
        let wrong = client()
            .post(call(provider).url(&mock, false))
            .headers(call(provider).headers("sk-bad-key-000000"))
            .json(&call(provider).body("x", false))
            .send()
            .await?;
        assert!(
            wrong.status().is_client_error(),
            "fixed mode still checks keys"
        );
    }
    assert!(mock.requests().is_empty(), "recording was off");
    Ok(())
}

#[tokio::test]
async fn binary_serves_all_providers_and_reports_stats() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-mock-provider"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--fixed",
            "--tokens",
            "3",
            "--chunk-delay",
            "1ms",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line)).await??;
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        bail!("unexpected first line {line:?}")
    };
    let url = format!("http://{addr}");
    let text = client()
        .post(format!("{url}/v1/messages"))
        .headers(call(Provider::Anthropic).headers("any-key"))
        .json(&call(Provider::Anthropic).body("hi", true))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(
        sse_events(&text).last().unwrap().0.as_deref(),
        Some("message_stop")
    );
    let stats: Value = client()
        .get(format!("{url}/__mock/stats"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(stats["requests_total"], 1);
    child.kill().await?;
    Ok(())
}
