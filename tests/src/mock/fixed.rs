//! Fixed mode for benchmarks: every provider's answers rendered once at start-up, so serving a request
//! costs a route lookup, a key check, a small JSON probe and cheap clones.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::behavior::{Action, Behavior};
use super::body::Pacing;
use super::config::{DEFAULT_GENERATED_TOKENS, MockConfig};
use super::handler::{Send, context, deliver};
use super::reply::{self, Prompt};
use super::route::{Endpoint, Provider, Route};
use super::wire::{self, openai};

/// Prompt size reported by fixed answers, which do not read the prompt.
pub const FIXED_PROMPT_TOKENS: u64 = 10;

/// Which precomputed answer a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Variant {
    Json,
    Stream,
    /// OpenAI/Azure stream with `include_usage`; Gemini with `alt=sse`.
    StreamWithUsageOrSse,
}

#[derive(Debug)]
struct Prepared {
    status: StatusCode,
    headers: HeaderMap,
    frames: Vec<Bytes>,
    is_stream: bool,
}

#[derive(Debug)]
pub(crate) struct FixedResponses {
    prepared: HashMap<(Provider, Variant), Prepared>,
    frame_delay: std::time::Duration,
}

/// The only request fields fixed mode reads.
#[derive(Deserialize)]
struct StreamProbe {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn model_of(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "gpt-4o-mini",
        Provider::Azure => openai::AZURE_MODEL,
        Provider::Anthropic => "claude-sonnet-4-5",
        Provider::Gemini => "gemini-2.5-flash",
    }
}

fn route_of(provider: Provider, variant: Variant) -> Route {
    let (endpoint, path_model) = match (provider, variant) {
        (Provider::OpenAi | Provider::Azure, _) => (Endpoint::ChatCompletions, None),
        (Provider::Anthropic, _) => (Endpoint::Messages, None),
        (Provider::Gemini, Variant::Json) => (
            Endpoint::GenerateContent,
            Some(model_of(provider).to_owned()),
        ),
        (Provider::Gemini, _) => (
            Endpoint::StreamGenerateContent,
            Some(model_of(provider).to_owned()),
        ),
    };
    Route {
        provider,
        endpoint,
        path_model,
        azure_dated: false,
    }
}

impl FixedResponses {
    pub fn new(config: &MockConfig) -> Self {
        let behavior = Behavior::generated(config.tokens.unwrap_or(DEFAULT_GENERATED_TOKENS));
        let prompt = Prompt {
            words: FIXED_PROMPT_TOKENS,
            ..Prompt::default()
        };
        let reply = reply::plan(&prompt, &behavior, config);
        let mut prepared = HashMap::new();
        for provider in Provider::ALL {
            for variant in [
                Variant::Json,
                Variant::Stream,
                Variant::StreamWithUsageOrSse,
            ] {
                if provider == Provider::Anthropic && variant == Variant::StreamWithUsageOrSse {
                    continue;
                }
                let route = route_of(provider, variant);
                let body = json!({"stream": variant != Variant::Json, "stream_options": {"include_usage": variant == Variant::StreamWithUsageOrSse}});
                let query = (variant == Variant::StreamWithUsageOrSse).then_some("alt=sse");
                let ctx = context(0, &route, &body, query, Some(model_of(provider).to_owned()));
                let send = deliver(
                    &ctx,
                    wire::answer(&ctx, &reply),
                    &Action::Answer,
                    wire::common_headers(&ctx),
                    Pacing::default(),
                );
                prepared.insert(
                    (provider, variant),
                    Prepared {
                        status: send.status,
                        headers: send.headers,
                        frames: send.frames,
                        is_stream: send.is_stream,
                    },
                );
            }
        }
        Self {
            prepared,
            frame_delay: config.chunk_delay,
        }
    }

    /// The precomputed answer, or `None` when the request needs the full path (other endpoints, bad key).
    pub fn answer(
        &self,
        route: &Route,
        headers: &HeaderMap,
        query: Option<&str>,
        raw: &[u8],
        expected: Option<&str>,
    ) -> Option<Send> {
        let variant = match (route.provider, route.endpoint) {
            (Provider::Gemini, Endpoint::GenerateContent) => Variant::Json,
            (Provider::Gemini, Endpoint::StreamGenerateContent) => {
                if wire::query_param(query, "alt").as_deref() == Some("sse") {
                    Variant::StreamWithUsageOrSse
                } else {
                    Variant::Stream
                }
            }
            (Provider::OpenAi | Provider::Azure, Endpoint::ChatCompletions)
            | (Provider::Anthropic, Endpoint::Messages) => {
                let probe: StreamProbe = serde_json::from_slice(raw).ok()?;
                match (
                    probe.stream,
                    probe.stream_options.is_some_and(|o| o.include_usage),
                ) {
                    (false, _) => Variant::Json,
                    (true, true) if route.provider != Provider::Anthropic => {
                        Variant::StreamWithUsageOrSse
                    }
                    (true, _) => Variant::Stream,
                }
            }
            _ => return None,
        };
        wire::check_auth(route, headers, query, expected).ok()?;
        let prepared = self.prepared.get(&(route.provider, variant))?;
        Some(Send {
            status: prepared.status,
            headers: prepared.headers.clone(),
            frames: prepared.frames.clone(),
            content_length: None,
            ending: super::body::Ending::Complete,
            pacing: Pacing {
                frame_delay: if prepared.is_stream {
                    self.frame_delay
                } else {
                    Default::default()
                },
                drip: None,
            },
            is_stream: prepared.is_stream,
        })
    }
}
