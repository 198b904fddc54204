//! Wire-faithful, scriptable, fault-injecting mock upstreams for OpenAI, Azure OpenAI, Anthropic and Gemini.
//!
//! One [`MockProvider`] serves all four providers' paths on one port, answering in each provider's real
//! JSON and streaming formats. By default an answer echoes the request's last user turn and reports usage
//! as word counts (see [`count_words`]), so a test can check translation and accounting end to end. Tests
//! script behaviours and faults with [`Behavior`] and [`Rule`], then inspect
//! [`MockProvider::requests`] and [`MockProvider::stats`].
//!
//! What a test can rely on:
//! - Paths: OpenAI `/v1/chat/completions`, `/v1/embeddings`, `GET /v1/models`; Azure
//!   `/openai/deployments/{deployment}/{chat/completions,embeddings}?api-version=…` (missing: 404, not a
//!   date: 400) and `/openai/v1/…`; Anthropic `/v1/messages`, `GET /v1/models`; Gemini
//!   `/v1beta/models/{model}:{generateContent,streamGenerateContent,embedContent,batchEmbedContents,countTokens}`
//!   (also under `/v1/`, which the `google-genai` SDK uses). Anything else: OpenAI's 404 "Invalid URL".
//! - Keys: OpenAI `Authorization: Bearer`, Azure `api-key` (or bearer), Anthropic `x-api-key` (or bearer,
//!   as the current Python SDK sends it), Gemini `x-goog-api-key` or `?key=`. Without
//!   [`MockProvider::expect_api_key`] any non-empty key passes; a missing key always fails. A wrong Gemini
//!   key is a 400 `API_KEY_INVALID` and a missing one a 403, as Gemini does.
//! - Validation ([`MockConfig::strict`], on by default): the real APIs' rejections of missing `model` /
//!   `messages` / `max_tokens` / `anthropic-version`, unanswered or orphaned tool calls, non-alternating
//!   Gemini turns, out-of-range temperatures.
//! - Streams: OpenAI `data:` chunks ending `data: [DONE]` (usage chunk only with `include_usage`), Azure's
//!   empty first chunk, Anthropic's named events, Gemini SSE with CRLF (`alt=sse`) or a JSON array.
//! - The request's output limit truncates the answer and sets each provider's length finish reason.
//! - `GET /__mock/stats` returns [`Stats`] as JSON (not recorded, not counted).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use sluice_tests::mock::{Behavior, MockProvider, Provider, RetryAfter};
//!
//! let mock = MockProvider::start().await?;
//! mock.expect_api_key("sk-test");
//! mock.push(Behavior::rate_limited_retry_after(RetryAfter::Seconds(1)));
//! mock.push_for(Provider::Anthropic, Behavior::text("hello").with_chunk_delay(Duration::from_millis(5)));
//! // … point the gateway at mock.url(), send requests …
//! assert_eq!(mock.requests().len(), 2);
//! # Ok(()) }
//! ```

mod behavior;
mod body;
mod config;
mod conn;
mod embed;
mod fixed;
mod handler;
mod record;
mod reply;
mod route;
mod server;
mod state;
mod stats;
mod wire;

pub use behavior::{Behavior, RetryAfter, Rule};
pub use config::{
    DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_GENERATED_TOKENS, MockConfig, ParseDurationError,
    parse_duration,
};
pub use fixed::FIXED_PROMPT_TOKENS;
pub use record::{Outcome, RecordedRequest};
pub use reply::{Finish, ToolCall, Usage, count_words};
pub use route::{Endpoint, Provider, Route};
pub use server::MockProvider;
pub use stats::Stats;
