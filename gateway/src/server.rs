//! Listeners: the API port (HTTP/1.1 and HTTP/2 — h2c by prior knowledge, h2 via ALPN over optional
//! TLS) and the admin port, with graceful drain: stop accepting, let in-flight requests and streams
//! finish within the drain timeout, then close what is left.

use std::convert::Infallible;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::handlers::admin::Admin;

/// Time a client gets to send a request's headers (slow-loris protection on HTTP/1.1).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading TLS file {path}: {source}")]
    ReadTls {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no private key")]
    NoPrivateKey { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Certificate chain and private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Loads a rustls server configuration offering h2 and http/1.1.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|source| ServerError::ReadTls {
                path: path.to_owned(),
                source,
            })
    };
    let certs = rustls_pemfile::certs(&mut open(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServerError::ReadTls {
            path: files.cert.clone(),
            source,
        })?;
    let key = rustls_pemfile::private_key(&mut open(&files.key)?)
        .map_err(|source| ServerError::ReadTls {
            path: files.key.clone(),
            source,
        })?
        .ok_or_else(|| ServerError::NoPrivateKey {
            path: files.key.clone(),
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Addresses and TLS of the listeners.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: Option<TlsFiles>,
}

/// Binds a listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Running listeners.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop_accepting: CancellationToken,
    stop_admin: CancellationToken,
    api: JoinHandle<GracefulShutdown>,
    admin: JoinHandle<GracefulShutdown>,
}

/// Starts both listeners.
pub async fn start(
    settings: &ServerSettings,
    app: Arc<App>,
    admin: Admin,
) -> Result<RunningServer, ServerError> {
    let tls = settings.tls.as_ref().map(tls_acceptor).transpose()?;
    let api_listener = bind(settings.listen).await?;
    let admin_listener = bind(settings.admin_listen).await?;
    let local = |listener: &TcpListener, fallback| listener.local_addr().unwrap_or(fallback);
    let addr = local(&api_listener, settings.listen);
    let admin_addr = local(&admin_listener, settings.admin_listen);
    let stop_accepting = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    let api_service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    let admin_service = service_fn(move |request| {
        let response = admin.handle(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let api = tokio::spawn(accept_loop(
        api_listener,
        tls,
        api_service,
        stop_accepting.clone(),
    ));
    let admin = tokio::spawn(accept_loop(
        admin_listener,
        None,
        admin_service,
        stop_admin.clone(),
    ));
    tracing::info!(%addr, %admin_addr, tls = settings.tls.is_some(), "listening");
    Ok(RunningServer {
        addr,
        admin_addr,
        stop_accepting,
        stop_admin,
        api,
        admin,
    })
}

impl RunningServer {
    /// Stops accepting API connections, lets open ones finish (HTTP/1.1: after the current response;
    /// HTTP/2: GOAWAY, then the open streams complete) for at most `timeout`, then stops the admin port.
    /// Returns whether everything finished in time.
    pub async fn drain(self, timeout: Duration) -> bool {
        self.stop_accepting.cancel();
        let drained = match self.api.await {
            Ok(graceful) => {
                let open = graceful.count();
                if open > 0 {
                    tracing::info!(connections = open, timeout = ?timeout, "draining open connections");
                }
                tokio::time::timeout(timeout, graceful.shutdown())
                    .await
                    .is_ok()
            }
            Err(_) => true,
        };
        if !drained {
            tracing::warn!(timeout = ?timeout, "drain timeout reached; closing the remaining connections");
        }
        self.stop_admin.cancel();
        if let Ok(graceful) = self.admin.await {
            let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
        }
        drained
    }
}

/// Accepts until `stop`, serving each connection on its own task; returns the drain handle of the
/// connections still open.
async fn accept_loop<S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    stop: CancellationToken,
) -> GracefulShutdown
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let (builder, service, tls) = (builder.clone(), service.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve(&builder, stream, service, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => serve(&builder, stream, service, watcher, peer).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    graceful
}

async fn serve<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
