//! Provider wire formats: reading requests, rendering answers, stream events and error bodies, per provider.

pub(crate) mod anthropic;
pub(crate) mod gemini;
pub(crate) mod openai;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::behavior::RetryAfter;
use super::reply::{Prompt, Reply, Usage};
use super::route::{Endpoint, Provider, Route};

/// Everything about the request a renderer needs besides the answer itself.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// Request sequence number, used in ids so they are unique and predictable.
    pub seq: u64,
    pub route: Route,
    /// The model to name in the response.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// The client asked for a stream.
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Gemini `alt=sse` (otherwise a Gemini stream is a JSON array).
    pub sse: bool,
}

/// One stream event before framing: an optional SSE event name and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub name: Option<&'static str>,
    pub data: String,
}

impl Event {
    pub fn data(value: &Value) -> Self {
        Self {
            name: None,
            data: value.to_string(),
        }
    }

    pub fn named(name: &'static str, value: &Value) -> Self {
        Self {
            name: Some(name),
            data: value.to_string(),
        }
    }
}

/// How events are laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `event:`/`data:` lines, events separated by a blank line (`\n`).
    Sse,
    /// As `Sse` with `\r\n` line ends, as Gemini sends them.
    SseCrlf,
    /// A JSON array streamed element by element (Gemini without `alt=sse`).
    JsonArray,
}

impl Framing {
    /// One frame per event; `close` ends a JSON array (a cut stream leaves it open).
    pub fn frames(self, events: &[Event], close: bool) -> Vec<Bytes> {
        let mut frames: Vec<Bytes> = events
            .iter()
            .enumerate()
            .map(|(i, event)| self.frame(i, event))
            .collect();
        if self == Framing::JsonArray && close {
            if frames.is_empty() {
                frames.push(Bytes::from_static(b"[]"));
            } else {
                frames.push(Bytes::from_static(b"]"));
            }
        }
        frames
    }

    fn frame(self, index: usize, event: &Event) -> Bytes {
        let newline: &[u8] = if self == Framing::SseCrlf {
            b"\r\n"
        } else {
            b"\n"
        };
        let mut out = BytesMut::with_capacity(event.data.len() + 32);
        match self {
            Framing::Sse | Framing::SseCrlf => {
                if let Some(name) = event.name {
                    out.put_slice(b"event: ");
                    out.put_slice(name.as_bytes());
                    out.put_slice(newline);
                }
                out.put_slice(b"data: ");
                out.put_slice(event.data.as_bytes());
                out.put_slice(newline);
                out.put_slice(newline);
            }
            Framing::JsonArray => {
                out.put_slice(if index == 0 { b"[" } else { b",\r\n" });
                out.put_slice(event.data.as_bytes());
            }
        }
        out.freeze()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Sse => "text/event-stream; charset=utf-8",
            Framing::SseCrlf => "text/event-stream",
            Framing::JsonArray => "application/json; charset=UTF-8",
        }
    }
}

/// A rendered answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Json(Value),
    Stream {
        framing: Framing,
        events: Vec<Event>,
    },
}

/// A rendered error response.
#[derive(Debug)]
pub(crate) struct ErrorResponse {
    pub status: StatusCode,
    /// Boxed to keep `Result<_, ErrorResponse>` small.
    pub headers: Box<HeaderMap>,
    pub body: Bytes,
}

impl ErrorResponse {
    pub fn json(status: u16, body: &Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self {
            status: status_code(status),
            headers: Box::new(headers),
            body: Bytes::from(body.to_string()),
        }
    }

    /// The HTML page a CDN or load balancer in front of the API returns for a 502/504.
    pub fn proxy_html(status: u16) -> Self {
        let code = status_code(status);
        let title = format!(
            "{} {}",
            code.as_u16(),
            code.canonical_reason().unwrap_or("Error")
        );
        let body = format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
             <hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
        );
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        Self {
            status: code,
            headers: Box::new(headers),
            body: Bytes::from(body),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.insert(name, value);
        }
        self
    }
}

/// A failure the mock was told to produce, rendered by each provider in its own shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    MissingKey,
    InvalidKey { presented: String },
    RateLimited(Option<RetryAfter>),
    ContextLength { prompt_tokens: u64 },
    Status(u16),
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Adds `retry-after` / `retry-after-ms` for a retry hint.
pub(crate) fn retry_after_header(
    response: ErrorResponse,
    hint: Option<RetryAfter>,
) -> ErrorResponse {
    match hint {
        None => response,
        Some(RetryAfter::Seconds(seconds)) => response.with_header("retry-after", seconds),
        Some(RetryAfter::Millis(millis)) => response.with_header("retry-after-ms", millis),
        Some(RetryAfter::HttpDate(at)) => response.with_header("retry-after", http_date(at)),
    }
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Seconds a retry hint asks for, rounded up (for messages and Gemini's `retryDelay`).
pub(crate) fn retry_seconds(hint: Option<RetryAfter>) -> Option<u64> {
    match hint? {
        RetryAfter::Seconds(seconds) => Some(seconds),
        RetryAfter::Millis(millis) => Some(millis.div_ceil(1000)),
        RetryAfter::HttpDate(at) => Some(
            at.duration_since(std::time::SystemTime::now())
                .map(|d| d.as_secs() + 1)
                .unwrap_or(0),
        ),
    }
}

/// The provider-specific parts of handling a request, dispatched on the route's provider.
pub(crate) fn read_prompt(route: &Route, body: &Value) -> Prompt {
    match route.provider {
        Provider::OpenAi | Provider::Azure => openai::read_prompt(route, body),
        Provider::Anthropic => anthropic::read_prompt(body),
        Provider::Gemini => gemini::read_prompt(route, body),
    }
}

/// Checks the credentials a request carries against the expected key (`None`: any non-empty key).
pub(crate) fn check_auth(
    route: &Route,
    headers: &HeaderMap,
    query: Option<&str>,
    expected: Option<&str>,
) -> Result<(), Failure> {
    let presented = match route.provider {
        Provider::OpenAi => bearer(headers),
        Provider::Azure => header(headers, "api-key").or_else(|| bearer(headers)),
        // The current Python SDK sends its API key as a bearer token.
        Provider::Anthropic => header(headers, "x-api-key").or_else(|| bearer(headers)),
        Provider::Gemini => header(headers, "x-goog-api-key").or_else(|| query_param(query, "key")),
    };
    match presented {
        None => Err(Failure::MissingKey),
        Some(key) if key.is_empty() => Err(Failure::MissingKey),
        Some(key) if expected.is_some_and(|expected| expected != key) => {
            Err(Failure::InvalidKey { presented: key })
        }
        Some(_) => Ok(()),
    }
}

/// Renders a failure in the provider's shape.
pub(crate) fn failure(ctx: &Ctx, failure: &Failure) -> ErrorResponse {
    let response = match ctx.route.provider {
        Provider::OpenAi => openai::failure(ctx, failure, false),
        Provider::Azure => openai::failure(ctx, failure, true),
        Provider::Anthropic => anthropic::failure(ctx, failure),
        Provider::Gemini => gemini::failure(ctx, failure),
    };
    with_common_headers(ctx, response)
}

/// Provider-specific request checks: versions, required fields, conversation rules.
pub(crate) fn validate(
    ctx: &Ctx,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Value,
) -> Result<(), ErrorResponse> {
    let result = match ctx.route.provider {
        Provider::OpenAi => openai::validate(ctx, query, body, false),
        Provider::Azure => openai::validate(ctx, query, body, true),
        Provider::Anthropic => anthropic::validate(ctx, headers, body),
        Provider::Gemini => gemini::validate(ctx, body),
    };
    result.map_err(|response| with_common_headers(ctx, response))
}

/// A normal answer for a generation endpoint.
pub(crate) fn answer(ctx: &Ctx, reply: &Reply) -> Answer {
    match ctx.route.provider {
        Provider::OpenAi => openai::answer(ctx, reply, false),
        Provider::Azure => openai::answer(ctx, reply, true),
        Provider::Anthropic => anthropic::answer(ctx, reply),
        Provider::Gemini => gemini::answer(ctx, reply),
    }
}

/// The error a provider sends inside a 200 stream, and the status it would have used without a stream.
pub(crate) fn stream_error(ctx: &Ctx) -> (Event, ErrorResponse) {
    let (event, response) = match ctx.route.provider {
        Provider::OpenAi | Provider::Azure => openai::stream_error(ctx),
        Provider::Anthropic => anthropic::stream_error(ctx),
        Provider::Gemini => gemini::stream_error(ctx),
    };
    (event, with_common_headers(ctx, response))
}

/// Answers for the non-generation endpoints (embeddings, models, token counts), with their usage.
pub(crate) fn utility(ctx: &Ctx, body: &Value) -> Result<(Value, Option<Usage>), ErrorResponse> {
    let result = match (ctx.route.provider, ctx.route.endpoint) {
        (Provider::OpenAi | Provider::Azure, Endpoint::Embeddings) => {
            Ok(openai::embeddings(ctx, body))
        }
        (Provider::OpenAi | Provider::Azure, Endpoint::Models) => Ok((openai::models(), None)),
        (Provider::Anthropic, Endpoint::Models) => Ok((anthropic::models(), None)),
        (Provider::Gemini, Endpoint::Models) => Ok((gemini::models(), None)),
        (Provider::Gemini, Endpoint::EmbedContent) => Ok(gemini::embed(body)),
        (Provider::Gemini, Endpoint::BatchEmbedContents) => Ok(gemini::batch_embed(body)),
        (Provider::Gemini, Endpoint::CountTokens) => Ok(gemini::count_tokens(ctx, body)),
        _ => Err(ErrorResponse::json(
            404,
            &serde_json::json!({"error": {"message": "unsupported endpoint"}}),
        )),
    };
    result.map_err(|response| with_common_headers(ctx, response))
}

/// Headers every response of the provider carries (request ids, rate-limit state).
pub(crate) fn common_headers(ctx: &Ctx) -> HeaderMap {
    match ctx.route.provider {
        Provider::OpenAi => openai::common_headers(ctx, false),
        Provider::Azure => openai::common_headers(ctx, true),
        Provider::Anthropic => anthropic::common_headers(ctx),
        Provider::Gemini => gemini::common_headers(),
    }
}

fn with_common_headers(ctx: &Ctx, mut response: ErrorResponse) -> ErrorResponse {
    for (name, value) in common_headers(ctx) {
        if let Some(name) = name {
            response.headers.entry(name).or_insert(value);
        }
    }
    response
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The first value of a query parameter (percent-decoding is not needed for the values the mock reads).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_owned())
    })
}

/// A stable-looking request id.
pub(crate) fn request_id(prefix: &str, seq: u64) -> String {
    format!("{prefix}{seq:024x}")
}

/// Masks a key the way OpenAI's error messages do: the first 3 and last 4 characters survive.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_carry_names_and_blank_lines() {
        let events = [
            Event {
                name: Some("ping"),
                data: "{}".into(),
            },
            Event {
                name: None,
                data: "[DONE]".into(),
            },
        ];
        let frames = Framing::Sse.frames(&events, true);
        assert_eq!(
            frames,
            [
                Bytes::from("event: ping\ndata: {}\n\n"),
                Bytes::from("data: [DONE]\n\n")
            ]
        );
        let crlf = Framing::SseCrlf.frames(&events[1..], true);
        assert_eq!(crlf, [Bytes::from("data: [DONE]\r\n\r\n")]);
    }

    #[test]
    fn json_array_frames_form_an_array_when_closed() {
        let events = [
            Event {
                name: None,
                data: "1".into(),
            },
            Event {
                name: None,
                data: "2".into(),
            },
        ];
        assert_eq!(
            Framing::JsonArray.frames(&events, true).concat(),
            b"[1,\r\n2]"
        );
        assert_eq!(
            Framing::JsonArray.frames(&events, false).concat(),
            b"[1,\r\n2"
        );
        assert_eq!(Framing::JsonArray.frames(&[], true).concat(), b"[]");
    }

    #[test]
    fn keys_are_masked_like_openai_does() {
        assert_eq!(mask_key("sk-abcdefgh1234"), "sk-********1234");
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(
            query_param(Some("alt=sse&key=k1"), "key").as_deref(),
            Some("k1")
        );
        assert_eq!(query_param(Some("alt=sse"), "key"), None);
        assert_eq!(query_param(None, "key"), None);
    }
}
