//! Logging setup and request ids.
//!
//! Logs are JSON lines on stderr by default (one object per event, with the request span's fields), or
//! human-readable text for terminals. Prompts, completions and keys are never logged. Every request runs in
//! a `request` span carrying `request_id`, `route`, `backend`, `provider` and `model`; with an OTLP endpoint
//! configured ([`otel`]), one more layer exports it, with one child span per upstream attempt ([`genai`]).

pub mod genai;
pub mod otel;

use http::HeaderValue;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Default filter when `RUST_LOG` is unset: our lifecycle and access logs, dependencies' warnings.
pub const DEFAULT_FILTER: &str = "info,hyper=warn,kube=warn,rustls=warn";

/// Installs the global subscriber. Fails if one is already installed (tests may call it repeatedly).
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|error| error.to_string())
}

/// Installs the global subscriber with trace export when `traces` is set ([`otel::TraceExport::resolve`]).
/// Without it, this is exactly [`init`]: the request path does no trace work at all. Keep the returned
/// [`otel::Tracing`] and call [`otel::Tracing::shutdown`] on exit to flush queued spans.
pub fn install(
    format: LogFormat,
    traces: Option<&otel::TraceExport>,
) -> Result<otel::Tracing, String> {
    let Some(traces) = traces else {
        init(format)?;
        return Ok(otel::Tracing::default());
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => logs.boxed(),
    };
    // Per-layer filters: `RUST_LOG` governs the logs only, and the attempt spans stay out of them so
    // every log line keeps the request span's fields.
    let logs = logs.with_filter(filter.and(tracing_subscriber::filter::filter_fn(otel::logged)));
    let (traces_layer, tracing) = otel::layer(traces).map_err(|error| error.to_string())?;
    tracing_subscriber::registry()
        .with(logs)
        .with(traces_layer)
        .try_init()
        .map_err(|error| error.to_string())?;
    tracing::info!(endpoint = %traces.display_url(), "exporting traces over OTLP/HTTP");
    Ok(tracing)
}

/// Longest client-supplied request id that is accepted; longer ones are replaced by a fresh id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request id to use: the client's `x-request-id` when it is short printable ASCII, else a new one.
pub fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    if let Some(value) = incoming
        && !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return value.clone();
    }
    new_request_id()
}

/// A fresh random id: `req_` and 32 hex digits.
pub fn new_request_id() -> HeaderValue {
    let id = format!("req_{:032x}", rand::random::<u128>());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_when_sane() {
        let good = HeaderValue::from_static("trace-abc-123");
        assert_eq!(request_id(Some(&good)), good);
        for bad in [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        ] {
            let id = request_id(Some(&bad));
            assert_ne!(id, bad);
            assert!(id.to_str().unwrap().starts_with("req_"));
        }
        assert_ne!(request_id(None), request_id(None));
    }
}
