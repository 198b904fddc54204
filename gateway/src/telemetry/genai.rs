//! OpenTelemetry span attributes: HTTP server conventions on the `request` span, GenAI client conventions
//! (`gen_ai.*`, `server.address`) on it and on one `attempt` span per upstream call.
//!
//! Every function returns at once when traces are off ([`otel::enabled`]). Only names, counts and
//! classifications are recorded: never prompts, completions, keys or headers.

use std::future::Future;
use std::sync::Arc;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::Status;
use opentelemetry::{Array, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::otel::{self, ATTEMPT_TARGET};
use crate::api::openai::FinishReason;
use crate::app::{Endpoint, Exchange};
use crate::config::Backend;
use crate::error::GatewayError;
use crate::metering::token_counts;
use crate::providers::ProviderKind;
use crate::upstream::dispatch::ChatAnswer;

/// `gen_ai.operation.name` of a GenAI call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Embeddings,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
        }
    }

    fn of(endpoint: Endpoint) -> Option<Self> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => Some(Operation::Chat),
            Endpoint::Embeddings => Some(Operation::Embeddings),
            Endpoint::Models => None,
        }
    }
}

/// `gen_ai.provider.name` (semantic conventions 1.37+) for a provider; `_OTHER` for generic
/// OpenAI-compatible servers, as the conventions ask for systems without a registered value.
pub fn provider_name(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi => "openai",
        ProviderKind::AzureOpenAi => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::OpenAiCompatible => "_OTHER",
    }
}

/// `gen_ai.system`, the attribute `gen_ai.provider.name` replaced; still read by many backends.
pub fn system_name(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::AzureOpenAi => "az.ai.openai",
        other => provider_name(other),
    }
}

/// Path template of an endpoint (`http.route`).
fn route_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "/v1/chat/completions",
        Endpoint::Embeddings => "/v1/embeddings",
        Endpoint::Models => "/v1/models",
        Endpoint::Messages => "/v1/messages",
    }
}

/// Reads W3C `traceparent`/`tracestate` from the client's headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The request arrived: span name and kind, HTTP attributes, and the client's trace as parent.
#[inline]
pub fn request_started(
    span: &Span,
    method: &http::Method,
    endpoint: Option<Endpoint>,
    headers: &HeaderMap,
) {
    if otel::enabled() {
        record_request_started(span, method, endpoint, headers);
    }
}

fn record_request_started(
    span: &Span,
    method: &http::Method,
    endpoint: Option<Endpoint>,
    headers: &HeaderMap,
) {
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled or already started; a root span is the right fallback.
    let _ = span.set_parent(context);
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method.as_str().to_owned());
    match endpoint {
        Some(endpoint) => {
            let route = route_of(endpoint);
            span.record("otel.name", format!("{method} {route}"));
            span.set_attribute("http.route", route);
            span.set_attribute("url.path", route);
            if let Some(operation) = Operation::of(endpoint) {
                span.set_attribute("gen_ai.operation.name", operation.as_str());
            }
        }
        // Unknown paths are client input: the name stays bounded and the path is not recorded.
        None => {
            span.record("otel.name", method.as_str());
        }
    }
}

/// The request span for the exchange to keep to its end (for a stream, beyond the handler); no span —
/// and no reference-count traffic — when traces are off.
#[inline]
pub fn request_span() -> Span {
    if otel::enabled() {
        Span::current()
    } else {
        Span::none()
    }
}

/// The model the client asked for (name or alias).
#[inline]
pub fn request_model(span: &Span, model: &str) {
    if otel::enabled() {
        span.set_attribute("gen_ai.request.model", model.to_owned());
    }
}

/// A chat attempt succeeded: the model, id and finish reasons the provider reported.
#[inline]
pub fn chat_answer(span: &Span, result: &Result<ChatAnswer, GatewayError>) {
    if otel::enabled()
        && let Ok(answer) = result
    {
        record_chat_answer(span, answer);
    }
}

fn record_chat_answer(span: &Span, answer: &ChatAnswer) {
    let (id, model, reasons): (&str, &str, Vec<&FinishReason>) = match answer {
        ChatAnswer::Complete(completion) => (
            &completion.id,
            &completion.model,
            completion
                .choices
                .iter()
                .filter_map(|choice| choice.finish_reason.as_ref())
                .collect(),
        ),
        ChatAnswer::PassThrough(raw) => (&raw.id, &raw.model, raw.finish_reasons.iter().collect()),
        ChatAnswer::Stream(stream) => {
            // The first chunk names the model; finish reasons come at the end of the stream.
            let Some(crate::providers::StreamItem::Chunk(chunk)) = stream.buffered.first() else {
                return;
            };
            (&chunk.id, &chunk.model, Vec::new())
        }
    };
    if !model.is_empty() {
        span.set_attribute("gen_ai.response.model", model.to_owned());
    }
    if !id.is_empty() {
        span.set_attribute("gen_ai.response.id", id.to_owned());
    }
    if !reasons.is_empty() {
        let reasons: Vec<StringValue> = reasons
            .into_iter()
            .map(|reason| StringValue::from(reason.as_str().to_owned()))
            .collect();
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(reasons)),
        );
    }
}

/// The request ended (for streams: when the relay ended): status, provider, usage, cost, outcome.
#[inline]
pub fn request_finished(
    exchange: &Exchange,
    status: u16,
    usage: Option<&crate::api::openai::Usage>,
    cost_usd: Option<f64>,
    failure: Option<&'static str>,
) {
    if otel::enabled() {
        record_request_finished(exchange, status, usage, cost_usd, failure);
    }
}

fn record_request_finished(
    exchange: &Exchange,
    status: u16,
    usage: Option<&crate::api::openai::Usage>,
    cost_usd: Option<f64>,
    failure: Option<&'static str>,
) {
    let span = &exchange.span;
    // Entering sets the span's end time to now: a stream's span lasts until its relay ends.
    let _entered = span.enter();
    span.set_attribute("http.response.status_code", i64::from(status));
    if let Some(key) = &exchange.key {
        span.set_attribute("sluice.key", key.id.to_string());
    }
    if let Some(route) = &exchange.route {
        span.set_attribute("sluice.route", route.id.to_string());
    }
    if let Some(backend) = &exchange.backend {
        span.set_attribute("gen_ai.provider.name", provider_name(backend.provider));
        span.set_attribute("gen_ai.system", system_name(backend.provider));
        span.set_attribute("sluice.backend", backend.name.to_string());
        span.set_attribute("sluice.provider", backend.provider.as_str());
    }
    span.set_attribute("sluice.attempts", i64::from(exchange.attempts));
    if let Some(cache) = exchange.cache {
        span.set_attribute("sluice.cache", cache.as_str());
    }
    if exchange.streamed {
        span.set_attribute("sluice.streamed", true);
    }
    if let Some(usage) = usage {
        let tokens = token_counts(usage);
        span.set_attribute("gen_ai.usage.input_tokens", count(tokens.input));
        span.set_attribute("gen_ai.usage.output_tokens", count(tokens.output));
        if tokens.cached_input > 0 {
            span.set_attribute(
                "gen_ai.usage.cache_read.input_tokens",
                count(tokens.cached_input),
            );
        }
    }
    if let Some(cost) = cost_usd {
        span.set_attribute("sluice.cost_usd", cost);
    }
    if let Some(failure) = failure {
        span.set_attribute("error.type", failure);
    }
    // Server spans: 5xx are errors, 4xx are the client's (status left unset); a stream cut after its
    // 200 head is an error unless the client itself went away.
    let failed_stream = status < 400 && failure.is_some_and(|class| class != "client_disconnect");
    if status >= 500 || failed_stream {
        span.set_status(Status::error(failure.unwrap_or("error")));
    }
}

/// A token count as an OpenTelemetry integer.
fn count(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

/// Runs one upstream attempt in its own client span (when traces are on).
pub async fn traced_attempt<T>(
    backend: Arc<Backend>,
    operation: Operation,
    attempt: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    if !otel::enabled() {
        return attempt.await;
    }
    let span = attempt_span(&backend, operation);
    let result = attempt.instrument(span.clone()).await;
    if let Err(error) = &result {
        span.set_attribute("error.type", error.metric_label());
        if let GatewayError::Upstream(upstream) = error {
            span.set_attribute("http.response.status_code", i64::from(upstream.status));
        }
        span.set_status(Status::error(error.metric_label()));
    }
    result
}

fn attempt_span(backend: &Backend, operation: Operation) -> Span {
    let target = &backend.target;
    let span = tracing::info_span!(
        target: ATTEMPT_TARGET,
        "attempt",
        otel.name = format!("{} {}", operation.as_str(), target.model),
        otel.kind = "client",
    );
    span.set_attribute("gen_ai.operation.name", operation.as_str());
    span.set_attribute("gen_ai.provider.name", provider_name(backend.provider));
    span.set_attribute("gen_ai.system", system_name(backend.provider));
    span.set_attribute("gen_ai.request.model", target.model.clone());
    span.set_attribute("sluice.backend", backend.name.to_string());
    // Host and port only: the rest of an endpoint URL is never needed here and may carry tokens.
    if let Ok(uri) = target.endpoint.parse::<http::Uri>()
        && let Some(host) = uri.host()
    {
        span.set_attribute("server.address", host.to_owned());
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        if let Some(port) = port {
            span.set_attribute("server.port", i64::from(port));
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_follow_the_conventions() {
        assert_eq!(provider_name(ProviderKind::OpenAi), "openai");
        assert_eq!(provider_name(ProviderKind::AzureOpenAi), "azure.ai.openai");
        assert_eq!(system_name(ProviderKind::AzureOpenAi), "az.ai.openai");
        assert_eq!(provider_name(ProviderKind::Gemini), "gcp.gemini");
        assert_eq!(provider_name(ProviderKind::OpenAiCompatible), "_OTHER");
    }
}
