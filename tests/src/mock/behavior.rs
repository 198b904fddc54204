//! Scripted behaviours: what the mock answers to the next matching request, including injected faults.

use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::reply::{Finish, ToolCall, Usage};
use super::route::{Endpoint, Provider};

/// How one request is answered: an action (a normal answer or a fault) plus modifiers.
///
/// Built with the constructors (`Behavior::text`, `Behavior::status`, …) and refined with the `with_*`
/// modifiers, e.g. `Behavior::text("a b c").with_chunk_delay(Duration::from_millis(20))`.
#[derive(Clone, Debug)]
pub struct Behavior {
    pub(crate) action: Action,
    pub(crate) content: Content,
    pub(crate) latency: Duration,
    pub(crate) chunk_delay: Option<Duration>,
    pub(crate) chunks: Option<usize>,
    pub(crate) drip: Option<Drip>,
    pub(crate) usage: Option<Usage>,
    pub(crate) finish: Option<Finish>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// What happens to the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// A normal 200 answer with the behaviour's content.
    Answer,
    /// The provider's error body for this HTTP status.
    Status(u16),
    /// 429 in the provider's shape, optionally with a retry hint.
    RateLimited(Option<RetryAfter>),
    /// The provider's "context length exceeded" 400.
    ContextLengthExceeded,
    /// 200 with a body that is not valid JSON (or a stream event that is not).
    MalformedJson,
    /// Close the TCP connection with a reset before sending anything.
    Reset,
    /// Send the response head and this many stream events (half the body when not streaming), then reset.
    ResetAfterEvents(usize),
    /// A 200 stream whose event at this position is the provider's mid-stream error; the stream then ends.
    ErrorEventAfter(usize),
    /// Never answer; the request stays open until the client gives up.
    Hang,
}

/// The text and tool calls of an answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Content {
    pub text: TextSource,
    pub tool_calls: Vec<ToolCall>,
}

/// Where the answer's text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TextSource {
    /// The server default: generated words when `MockConfig::tokens` is set, else an echo.
    Default,
    /// The text of the request's last user turn, verbatim.
    Echo,
    /// Exactly this text.
    Fixed(String),
    /// This many generated words.
    Generated(usize),
}

/// A retry hint sent with a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `retry-after: <seconds>`.
    Seconds(u64),
    /// `retry-after: <IMF-fixdate>`, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    HttpDate(SystemTime),
    /// `retry-after-ms: <milliseconds>` (the OpenAI and Anthropic SDKs read it first).
    Millis(u64),
}

/// Write the response in slices of `bytes`, pausing `interval` between slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Drip {
    pub bytes: usize,
    pub interval: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Self::from_action(Action::Answer)
    }
}

impl Behavior {
    fn from_action(action: Action) -> Self {
        Self {
            action,
            content: Content {
                text: TextSource::Default,
                tool_calls: Vec::new(),
            },
            latency: Duration::ZERO,
            chunk_delay: None,
            chunks: None,
            drip: None,
            usage: None,
            finish: None,
            headers: Vec::new(),
        }
    }

    /// Answer by echoing the text of the request's last user turn (text parts and tool results).
    pub fn echo() -> Self {
        Self::default().with_text_source(TextSource::Echo)
    }

    /// Answer with exactly this text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::default().with_text_source(TextSource::Fixed(text.into()))
    }

    /// Answer with `count` generated words (one token each).
    pub fn generated(count: usize) -> Self {
        Self::default().with_text_source(TextSource::Generated(count))
    }

    /// Answer with one tool call and no text; the finish reason becomes the provider's tool-call reason.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::text("").and_tool_call(name, arguments)
    }

    /// Adds a tool call after the answer's text (call it repeatedly for parallel calls).
    pub fn and_tool_call(mut self, name: impl Into<String>, arguments: Value) -> Self {
        self.content.tool_calls.push(ToolCall::new(name, arguments));
        self
    }

    /// Adds a fully specified tool call (with an id or a Gemini thought signature).
    pub fn and_tool_call_spec(mut self, call: ToolCall) -> Self {
        self.content.tool_calls.push(call);
        self
    }

    /// Fail with the provider's error body for `status` (e.g. 500, 502, 503, 529).
    pub fn status(status: u16) -> Self {
        Self::from_action(Action::Status(status))
    }

    /// 429 without any retry hint.
    pub fn rate_limited() -> Self {
        Self::from_action(Action::RateLimited(None))
    }

    /// 429 with a retry hint.
    pub fn rate_limited_retry_after(retry_after: RetryAfter) -> Self {
        Self::from_action(Action::RateLimited(Some(retry_after)))
    }

    /// The provider's "context length exceeded" error.
    pub fn context_length_exceeded() -> Self {
        Self::from_action(Action::ContextLengthExceeded)
    }

    /// A 200 whose body (or second stream event) is not valid JSON.
    pub fn malformed_json() -> Self {
        Self::from_action(Action::MalformedJson)
    }

    /// Reset the connection without sending a response.
    pub fn reset() -> Self {
        Self::from_action(Action::Reset)
    }

    /// Send the head and the first `events` stream events, then reset the connection. A non-streaming
    /// request gets half of its body before the reset.
    pub fn reset_after_events(events: usize) -> Self {
        Self::from_action(Action::ResetAfterEvents(events))
    }

    /// A 200 stream that carries the provider's mid-stream error as event number `events` (0: the first
    /// event) and then ends. A non-streaming request gets the matching error status instead.
    pub fn error_event_after(events: usize) -> Self {
        Self::from_action(Action::ErrorEventAfter(events))
    }

    /// Never answer.
    pub fn hang() -> Self {
        Self::from_action(Action::Hang)
    }

    /// Waits this long before the response head.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Waits this long before each stream event after the first.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = Some(delay);
        self
    }

    /// Splits the streamed text into this many content events.
    pub fn with_chunks(mut self, chunks: usize) -> Self {
        self.chunks = Some(chunks.max(1));
        self
    }

    /// Writes the body `bytes` at a time with `interval` between writes.
    pub fn with_drip(mut self, bytes: usize, interval: Duration) -> Self {
        self.drip = Some(Drip {
            bytes: bytes.max(1),
            interval,
        });
        self
    }

    /// Reports these usage figures instead of the ones computed from the request.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Reports this finish reason instead of the computed one.
    pub fn with_finish(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }

    /// Adds a response header (e.g. `x-should-retry: false`); invalid names or values are ignored.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            self.headers.push((name, value));
        }
        self
    }

    fn with_text_source(mut self, text: TextSource) -> Self {
        self.content.text = text;
        self
    }
}

/// A behaviour with the requests it applies to and how many times it may be used.
#[derive(Clone, Debug)]
pub struct Rule {
    pub(crate) behavior: Behavior,
    pub(crate) provider: Option<Provider>,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) model: Option<String>,
    pub(crate) remaining: Option<usize>,
}

impl Rule {
    /// Applies `behavior` once, to the next request of any kind.
    pub fn new(behavior: Behavior) -> Self {
        Self {
            behavior,
            provider: None,
            endpoint: None,
            model: None,
            remaining: Some(1),
        }
    }

    /// Only requests to this provider's API.
    pub fn for_provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Only requests for this operation.
    pub fn for_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Only requests naming this model (body `model`, Gemini path model or Azure deployment).
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Applies to the next `times` matching requests.
    pub fn times(mut self, times: usize) -> Self {
        self.remaining = Some(times);
        self
    }

    /// Applies to every matching request.
    pub fn always(mut self) -> Self {
        self.remaining = None;
        self
    }

    pub(crate) fn matches(
        &self,
        provider: Provider,
        endpoint: Endpoint,
        model: Option<&str>,
    ) -> bool {
        self.provider.is_none_or(|p| p == provider)
            && self.endpoint.is_none_or(|e| e == endpoint)
            && self.model.as_deref().is_none_or(|m| model == Some(m))
    }
}

/// An ordered rule list: the first matching rule answers and is used up after its count.
#[derive(Debug, Default)]
pub(crate) struct Script {
    rules: Vec<Rule>,
    default: Behavior,
}

impl Script {
    pub fn add(&mut self, rule: Rule) {
        if rule.remaining != Some(0) {
            self.rules.push(rule);
        }
    }

    pub fn set_default(&mut self, behavior: Behavior) {
        self.default = behavior;
    }

    pub fn clear(&mut self) {
        self.rules.clear();
        self.default = Behavior::default();
    }

    pub fn pending(&self) -> usize {
        self.rules
            .iter()
            .filter(|rule| rule.remaining.is_some())
            .count()
    }

    /// The behaviour for a request, consuming one use of the rule that supplied it.
    pub fn next(
        &mut self,
        provider: Provider,
        endpoint: Endpoint,
        model: Option<&str>,
    ) -> Behavior {
        let Some(index) = self
            .rules
            .iter()
            .position(|rule| rule.matches(provider, endpoint, model))
        else {
            return self.default.clone();
        };
        let rule = &mut self.rules[index];
        let behavior = rule.behavior.clone();
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.rules.remove(index);
            }
        }
        behavior
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order_and_are_used_up() {
        let mut script = Script::default();
        script.add(Rule::new(Behavior::status(503)).times(2));
        script.add(Rule::new(Behavior::status(429)).for_provider(Provider::Anthropic));
        let next =
            |script: &mut Script, provider| script.next(provider, Endpoint::Messages, None).action;
        assert_eq!(next(&mut script, Provider::Anthropic), Action::Status(503));
        assert_eq!(next(&mut script, Provider::OpenAi), Action::Status(503));
        assert_eq!(next(&mut script, Provider::OpenAi), Action::Answer);
        assert_eq!(next(&mut script, Provider::Anthropic), Action::Status(429));
        assert_eq!(next(&mut script, Provider::Anthropic), Action::Answer);
        assert_eq!(script.pending(), 0);
    }

    #[test]
    fn model_rules_only_match_that_model_and_always_rules_stay() {
        let mut script = Script::default();
        script.add(
            Rule::new(Behavior::status(500))
                .for_model("gpt-4o")
                .always(),
        );
        assert_eq!(
            script
                .next(
                    Provider::OpenAi,
                    Endpoint::ChatCompletions,
                    Some("gpt-4o-mini")
                )
                .action,
            Action::Answer
        );
        for _ in 0..3 {
            let action = script
                .next(Provider::OpenAi, Endpoint::ChatCompletions, Some("gpt-4o"))
                .action;
            assert_eq!(action, Action::Status(500));
        }
    }
}
