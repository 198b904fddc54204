//! Relays a provider's stream to the client: each upstream frame is translated and re-encoded as soon as
//! it arrives (no buffering beyond one frame), with idle and total timeouts, and exactly one end-of-stream
//! report — also when the client disconnects, which drops the relay and with it the upstream connection.
//! A stream that breaks or stalls after its first event is reported to its backend's circuit breaker.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::time::{Duration, Instant};

use super::dispatch::{LateFailure, OpenStream};
use crate::api::encode::{AnthropicSseEncoder, OpenAiSseEncoder};
use crate::api::openai::Usage;
use crate::providers::{ClientError, StreamItem, StreamTranslator, UpstreamErrorKind};

/// Re-encodes canonical stream items for the client's API surface.
#[derive(Debug)]
pub enum SseEncoder {
    OpenAi(OpenAiSseEncoder),
    Anthropic(AnthropicSseEncoder),
}

impl SseEncoder {
    fn encode(&mut self, item: &StreamItem, out: &mut Vec<u8>) {
        match self {
            SseEncoder::OpenAi(encoder) => encoder.encode(item, out),
            SseEncoder::Anthropic(encoder) => encoder.encode(item, out),
        }
    }

    fn encode_error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        match self {
            SseEncoder::OpenAi(encoder) => encoder.encode_error(error, out),
            SseEncoder::Anthropic(encoder) => encoder.encode_error(error, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            SseEncoder::OpenAi(encoder) => encoder.finish(out),
            SseEncoder::Anthropic(encoder) => encoder.finish(out),
        }
    }
}

/// How a relayed stream ended.
#[derive(Debug)]
pub struct StreamEnd<'a> {
    /// The last usage the provider reported (partial when the stream was cut).
    pub usage: Option<&'a Usage>,
    /// The provider finished the stream and the client received all of it.
    pub complete: bool,
    /// Metric class of the failure, when not complete.
    pub failure: Option<&'static str>,
}

/// Receives the relay's two moments: the first bytes sent, and the end.
pub trait StreamObserver: Send + 'static {
    /// The first output is about to be sent (time to first token).
    fn first_output(&mut self);
    /// The stream ended (called exactly once).
    fn finished(self: Box<Self>, end: StreamEnd<'_>);
    /// Sees, and may rewrite, every canonical item before it is encoded (PII redaction, cache assembly).
    fn item(&mut self, item: &mut StreamItem) {
        let _ = item;
    }
    /// The upstream finished normally: one more item to encode before the end of the stream, if any.
    fn last_item(&mut self) -> Option<StreamItem> {
        None
    }
}

struct Relay {
    body: Option<Incoming>,
    translator: StreamTranslator,
    encoder: SseEncoder,
    items: Vec<StreamItem>,
    idle: Duration,
    deadline: Instant,
    observer: Option<Box<dyn StreamObserver>>,
    first_sent: bool,
    failure: Option<&'static str>,
    /// Set when the failure was the backend's (not the client's, not the request's).
    late_failure: Option<LateFailure>,
    done: bool,
}

impl Relay {
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        loop {
            if self.done {
                return None;
            }
            let mut backend_failed = false;
            for mut item in self.items.drain(..) {
                if let Some(observer) = self.observer.as_mut() {
                    observer.item(&mut item);
                }
                if let StreamItem::Error(error) = &item {
                    self.failure.get_or_insert(failure_label(error.kind));
                    backend_failed |= !error.kind.is_client_fault();
                }
                self.encoder.encode(&item, &mut out);
            }
            if backend_failed {
                self.report_late_failure();
            }
            let Some(body) = self.body.as_mut() else {
                if self.translator.is_complete() {
                    if let Some(item) = self.observer.as_mut().and_then(|o| o.last_item()) {
                        self.encoder.encode(&item, &mut out);
                    }
                    self.encoder.finish(&mut out);
                }
                self.done = true;
                self.report(self.failure.is_none());
                return (!out.is_empty()).then(|| Bytes::from(out));
            };
            if !out.is_empty() {
                if !self.first_sent {
                    self.first_sent = true;
                    if let Some(observer) = self.observer.as_mut() {
                        observer.first_output();
                    }
                }
                return Some(Bytes::from(out));
            }
            let now = Instant::now();
            let (wait, on_timeout) = if self.deadline <= now + self.idle {
                (
                    self.deadline.saturating_duration_since(now),
                    "total_timeout",
                )
            } else {
                (self.idle, "upstream_idle_timeout")
            };
            match tokio::time::timeout(wait, body.frame()).await {
                Err(_) => self.fail(on_timeout, UpstreamErrorKind::Timeout, &mut out),
                Ok(None) => {
                    self.translator.finish(&mut self.items);
                    self.body = None;
                }
                Ok(Some(Err(_))) => self.fail("upstream_io", UpstreamErrorKind::Protocol, &mut out),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.translator.feed(&data, &mut self.items);
                        if self.translator.is_failed() || self.translator.is_complete() {
                            // Nothing useful follows; release the upstream connection now.
                            self.body = None;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream with an error event (the head was sent long ago, so a status is no longer possible).
    fn fail(&mut self, class: &'static str, kind: UpstreamErrorKind, out: &mut Vec<u8>) {
        self.failure.get_or_insert(class);
        self.report_late_failure();
        self.encoder.encode_error(&kind.client_error(), out);
        self.body = None;
        self.items.clear();
    }

    /// Counts the failure against the backend's breaker, once.
    fn report_late_failure(&mut self) {
        if let Some(late_failure) = self.late_failure.take() {
            late_failure.report();
        }
    }

    fn report(&mut self, complete: bool) {
        if let Some(observer) = self.observer.take() {
            let failure = if complete {
                None
            } else {
                Some(self.failure.unwrap_or("client_disconnect"))
            };
            observer.finished(StreamEnd {
                usage: self.translator.usage(),
                complete,
                failure,
            });
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before the end: the client went away (or the server is shutting down).
        self.report(false);
    }
}

fn failure_label(kind: UpstreamErrorKind) -> &'static str {
    match kind {
        UpstreamErrorKind::Protocol => "upstream_stream_cut",
        UpstreamErrorKind::Timeout => "upstream_timeout",
        UpstreamErrorKind::RateLimited => "upstream_rate_limited",
        UpstreamErrorKind::Overloaded => "upstream_overloaded",
        _ => "upstream_stream_error",
    }
}

/// The client-facing stream of body frames for an opened upstream stream.
pub fn relay(
    stream: Box<OpenStream>,
    encoder: SseEncoder,
    idle: Duration,
    deadline: Instant,
    observer: Box<dyn StreamObserver>,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    let stream = *stream;
    let relay = Relay {
        body: Some(stream.body),
        translator: stream.translator,
        encoder,
        items: stream.buffered,
        late_failure: Some(stream.late_failure),
        idle,
        deadline,
        observer: Some(observer),
        first_sent: false,
        failure: None,
        done: false,
    };
    futures::stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next_frame().await?;
        Some((Ok(Frame::data(bytes)), relay))
    })
}
