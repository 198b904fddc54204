//! The mock server and the handle tests hold: start on a port, script behaviours, read the log and counters.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::behavior::{Behavior, Rule};
use super::config::MockConfig;
use super::conn::{ConnControl, ResettableIo};
use super::handler::handle;
use super::record::RecordedRequest;
use super::route::Provider;
use super::state::Shared;
use super::stats::{OpenConnection, Stats};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// A running mock upstream serving the OpenAI, Azure OpenAI, Anthropic and Gemini APIs on one port.
///
/// Dropping the handle stops the server and closes its connections.
#[derive(Debug)]
pub struct MockProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Starts a mock with default settings on `127.0.0.1`, on a free port.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a mock with these settings on `127.0.0.1`, on a free port.
    pub async fn start_with(config: MockConfig) -> io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a mock on a given address.
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown.clone()));
        Ok(Self {
            shared,
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the Azure endpoint, the Anthropic base URL, and the root of the others.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI SDK's `base_url`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Requires this key from every provider's requests (unless a provider has its own).
    pub fn expect_api_key(&self, key: impl Into<String>) {
        self.shared.set_key(None, key.into());
    }

    /// Requires this key on one provider's requests.
    pub fn expect_api_key_for(&self, provider: Provider, key: impl Into<String>) {
        self.shared.set_key(Some(provider), key.into());
    }

    /// Queues a behaviour for the next request of any provider.
    pub fn push(&self, behavior: Behavior) {
        self.add_rule(Rule::new(behavior));
    }

    /// Queues a behaviour for the next request to one provider.
    pub fn push_for(&self, provider: Provider, behavior: Behavior) {
        self.add_rule(Rule::new(behavior).for_provider(provider));
    }

    /// Adds a rule after the existing ones (the first matching rule wins).
    pub fn add_rule(&self, rule: Rule) {
        self.shared.script().add(rule);
    }

    /// The behaviour for requests no rule matches (initially: a normal answer).
    pub fn set_default(&self, behavior: Behavior) {
        self.shared.script().set_default(behavior);
    }

    /// Drops all rules and restores the default behaviour.
    pub fn clear_script(&self) {
        self.shared.script().clear();
    }

    /// Counted rules not used up yet (a test can assert the script was consumed).
    pub fn pending_rules(&self) -> usize {
        self.shared.script().pending()
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().clone()
    }

    /// Requests to one provider's API.
    pub fn requests_for(&self, provider: Provider) -> Vec<RecordedRequest> {
        self.shared
            .log()
            .iter()
            .filter(|request| request.provider() == Some(provider))
            .cloned()
            .collect()
    }

    /// The latest request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.log().last().cloned()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Waits until the counters satisfy `condition`; on timeout returns the last counters as the error.
    pub async fn wait_for_stats(
        &self,
        condition: impl Fn(&Stats) -> bool,
        timeout: Duration,
    ) -> Result<Stats, Stats> {
        self.shared.stats.wait_for(condition, timeout).await
    }

    /// Runs until the server task ends (it ends only when the handle is shut down), for the binary.
    pub async fn serve(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops accepting, closes every connection and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&shared),
                    shutdown.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "mock provider failed to accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _open = OpenConnection::new(&shared.stats);
    // Small frames (stream events) must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let control = ConnControl::default();
    let io = TokioIo::new(ResettableIo::new(stream, control.clone()));
    let service = {
        let shared = Arc::clone(&shared);
        let control = control.clone();
        service_fn(move |request| handle(request, Arc::clone(&shared), control.clone()))
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "mock provider connection ended with an error");
            }
        }
        () = control.killed() => {}
        () = shutdown.cancelled() => {}
    }
}
