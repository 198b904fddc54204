//! The upstream HTTP client: one connection pool per connect timeout, rustls with webpki roots, ALPN h2.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Idle pooled connections are closed after this long; providers drop idle connections after ~60–120 s,
/// and reusing one they already closed costs a failed attempt.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(55);
/// Idle connections kept per upstream host: enough for a burst of concurrent streams without unbounded
/// file descriptors.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 256;
/// HTTP/2 pings keep long-lived streams' connections alive through NATs and load balancers.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// Client-wide settings (per-route timeouts are applied per request).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub pool_idle_timeout: Duration,
    pub max_idle_per_host: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
        }
    }
}

/// Why an upstream exchange failed below the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// DNS, TCP or TLS failed, or the connect timeout fired.
    #[error("connecting upstream: {0}")]
    Connect(String),
    /// No response head within the first-byte timeout.
    #[error("no response from upstream within {0:?}")]
    FirstByteTimeout(Duration),
    /// A streamed response stalled for longer than the idle timeout.
    #[error("upstream sent nothing for {0:?}")]
    IdleTimeout(Duration),
    /// The connection broke while sending the request or reading the response.
    #[error("upstream connection failed: {0}")]
    Io(String),
}

impl TransportError {
    /// Transport failures happen before the provider processed anything useful, so another attempt may work.
    pub fn is_retryable(&self) -> bool {
        true
    }

    /// Metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "upstream_connect",
            TransportError::FirstByteTimeout(_) => "upstream_timeout",
            TransportError::IdleTimeout(_) => "upstream_idle_timeout",
            TransportError::Io(_) => "upstream_io",
        }
    }

    /// Whether this is one of the timeout kinds (for the retry policy's `timeout` class).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            TransportError::FirstByteTimeout(_) | TransportError::IdleTimeout(_)
        )
    }

    /// Status, message and code shown to the client.
    pub fn client_rendering(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            TransportError::Connect(_) => (
                StatusCode::BAD_GATEWAY,
                "The upstream provider could not be reached.",
                "upstream_unreachable",
            ),
            TransportError::FirstByteTimeout(_) | TransportError::IdleTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "The upstream provider timed out.",
                "upstream_timeout",
            ),
            TransportError::Io(_) => (
                StatusCode::BAD_GATEWAY,
                "The connection to the upstream provider failed.",
                "upstream_connection_error",
            ),
        }
    }
}

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client; cloning shares the pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Inner,
}

impl HttpClient {
    /// Sends `request` and waits for the response head for at most `first_byte`.
    ///
    /// Dropping the returned body (or this future) closes the upstream stream, which is how a client that
    /// disconnects cancels the provider's work.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        first_byte: Duration,
    ) -> Result<http::Response<Incoming>, TransportError> {
        let request = request.map(Full::new);
        match tokio::time::timeout(first_byte, self.inner.request(request)).await {
            Err(_) => Err(TransportError::FirstByteTimeout(first_byte)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if error.is_connect() => {
                Err(TransportError::Connect(error_chain(&error)))
            }
            Ok(Err(error)) => Err(TransportError::Io(error_chain(&error))),
        }
    }
}

/// The error and its sources on one line, for logs (hyper's top-level message alone says little).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Hands out clients; connections pooled per connect timeout survive configuration reloads.
#[derive(Debug)]
pub struct Transport {
    settings: TransportSettings,
    clients: Mutex<HashMap<Duration, HttpClient>>,
}

impl Transport {
    pub fn new(settings: TransportSettings) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client whose connector enforces `connect_timeout` (a connector-level setting, hence one pool per
    /// distinct value; routes share pools when their timeouts match).
    pub fn client(&self, connect_timeout: Duration) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(connect_timeout)
            .or_insert_with(|| self.build(connect_timeout))
            .clone()
    }

    fn build(&self, connect_timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.settings.pool_idle_timeout)
            .pool_max_idle_per_host(self.settings.max_idle_per_host)
            .http2_keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_while_idle(false)
            .build(https);
        HttpClient { inner }
    }
}
