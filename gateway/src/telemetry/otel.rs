//! OpenTelemetry trace export over OTLP/HTTP (protobuf): off unless an endpoint is configured, then one
//! more `tracing` layer that turns the `request` and `attempt` spans into OpenTelemetry spans.
//!
//! Spans are handed to a batch processor that exports from its own thread, so the request path never waits
//! on the collector; when its queue is full, spans are dropped rather than slowing requests down.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::registry::LookupSpan;

/// Target of the per-attempt spans; the log layer leaves them out so log lines keep the request's fields.
pub const ATTEMPT_TARGET: &str = "sluice_gateway::attempt";
/// Service name when `OTEL_SERVICE_NAME` is unset.
pub const SERVICE_NAME: &str = "sluice-gateway";
/// Path appended to a base endpoint, as every OTLP/HTTP exporter does with `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub const TRACES_PATH: &str = "/v1/traces";

/// The only OTLP protocol this build speaks.
const HTTP_PROTOBUF: &str = "http/protobuf";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported. Every trace hook on the request path checks this first and does nothing
/// else when it is false, so with traces off the path costs what it did before (one relaxed load).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "{variable}={value}: only the http/protobuf OTLP protocol is supported (point it at the collector's HTTP port, usually 4318)"
    )]
    Protocol {
        variable: &'static str,
        value: String,
    },
    #[error("OTLP endpoint {url:?} is not an http(s) URL")]
    Endpoint { url: String },
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
}

/// Where traces are sent: the exporter's full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    pub url: String,
}

/// The environment the trace settings are read from (a map in tests, the process environment otherwise).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    }
}

impl TraceExport {
    /// Resolves the standard OpenTelemetry settings. `base` is `--otlp-endpoint` (which also reads
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`): a collector's base URL, `/v1/traces` is appended. As in every
    /// OpenTelemetry SDK, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is the full URL and wins. `None` (traces
    /// off) when neither is set, or when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn resolve(base: Option<&str>, env: &impl Env) -> Result<Option<Self>, TraceError> {
        let disabled = env
            .var("OTEL_SDK_DISABLED")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
            || env
                .var("OTEL_TRACES_EXPORTER")
                .is_some_and(|value| value.trim().eq_ignore_ascii_case("none"));
        if disabled {
            return Ok(None);
        }
        let url = match (env.var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), base) {
            (Some(traces), _) => traces.trim().to_owned(),
            (None, Some(base)) if !base.trim().is_empty() => {
                format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'))
            }
            (None, _) => return Ok(None),
        };
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = env.var(variable) {
                if value.trim() != HTTP_PROTOBUF {
                    return Err(TraceError::Protocol { variable, value });
                }
                break;
            }
        }
        let scheme_ok = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.scheme_str().map(str::to_owned))
            .is_some_and(|scheme| scheme == "http" || scheme == "https");
        if !scheme_ok {
            return Err(TraceError::Endpoint { url });
        }
        Ok(Some(Self { url }))
    }

    /// The URL without any user information, for logs.
    pub fn display_url(&self) -> String {
        match self.url.parse::<http::Uri>() {
            Ok(uri) => {
                let host = uri.host().unwrap_or_default();
                let port = uri
                    .port_u16()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default();
                format!(
                    "{}://{host}{port}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.path()
                )
            }
            Err(_) => String::from("<invalid>"),
        }
    }
}

/// The running exporter; [`Tracing::shutdown`] flushes the spans still queued.
#[derive(Debug, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Exports what is queued and stops the export thread (waits at most the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "flushing traces at shutdown failed");
        }
    }
}

/// Builds the exporter and the layer that feeds it. Reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*` as the
/// OpenTelemetry SDK defines them. Call outside an async runtime (the HTTP client is a blocking one).
pub fn layer<S>(export: &TraceExport) -> Result<(impl Layer<S> + use<S>, Tracing), TraceError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.url.clone())
        .build()
        .map_err(|error| TraceError::Exporter(error.to_string()))?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if ProcessEnv.var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_level(false)
        .with_filter(exported_spans());
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        layer,
        Tracing {
            provider: Some(provider),
        },
    ))
}

/// What becomes an OpenTelemetry span: the gateway's own spans (`request`, `attempt`), whatever `RUST_LOG`
/// says; no events (log lines stay in the logs) and nothing from dependencies.
fn exported_spans() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata: &tracing::Metadata<'_>| {
        metadata.is_span()
            && *metadata.level() <= Level::INFO
            && metadata.target().starts_with("sluice_gateway")
    })
    .with_max_level_hint(LevelFilter::INFO)
}

/// The log layer's extra filter when traces are on: everything but the attempt spans.
pub fn logged(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() != ATTEMPT_TARGET
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|value| (*value).to_owned())
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_given() {
        assert_eq!(TraceExport::resolve(None, &env(&[])).unwrap(), None);
        assert_eq!(TraceExport::resolve(Some(" "), &env(&[])).unwrap(), None);
        let on = TraceExport::resolve(Some("http://collector:4318/"), &env(&[])).unwrap();
        assert_eq!(on.unwrap().url, "http://collector:4318/v1/traces");
    }

    #[test]
    fn the_per_signal_variable_wins_and_is_used_as_is() {
        let export = TraceExport::resolve(
            Some("http://base:4318"),
            &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(export.url, "http://t:4318/custom");
    }

    #[test]
    fn disabling_variables_and_bad_settings() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let resolved = TraceExport::resolve(Some("http://c:4318"), &env(&[off])).unwrap();
            assert_eq!(resolved, None, "{off:?}");
        }
        let grpc = TraceExport::resolve(
            Some("http://c:4317"),
            &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        );
        assert!(matches!(grpc, Err(TraceError::Protocol { .. })), "{grpc:?}");
        let per_signal_first = TraceExport::resolve(
            Some("http://c:4318"),
            &env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        );
        assert!(per_signal_first.unwrap().is_some());
        let with_user = TraceExport {
            url: "https://user:secret@collector:4318/v1/traces".to_owned(),
        };
        assert_eq!(with_user.display_url(), "https://collector:4318/v1/traces");
        let no_scheme = TraceExport::resolve(Some("collector:4318"), &env(&[]));
        assert!(
            matches!(no_scheme, Err(TraceError::Endpoint { .. })),
            "{no_scheme:?}"
        );
    }
}
