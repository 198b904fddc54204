//! `sluice-mock-provider`: the mock upstream as a standalone server for the local demo and benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sluice_tests::mock::{MockConfig, MockProvider, Provider, parse_duration};
use std::io::Write as _;

/// Serves the OpenAI, Azure OpenAI, Anthropic and Gemini APIs on one port with deterministic answers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed on stdout).
    #[arg(long, env = "MOCK_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Pause before every response head, e.g. "50ms".
    #[arg(long, env = "MOCK_LATENCY", default_value = "0ms", value_parser = parse_duration)]
    latency: Duration,
    /// Reply with this many generated words instead of echoing the prompt.
    #[arg(long, env = "MOCK_TOKENS")]
    tokens: Option<usize>,
    /// Split streamed text into this many events (default: one per word).
    #[arg(long, env = "MOCK_CHUNKS")]
    chunks: Option<usize>,
    /// Pause between streamed events, e.g. "20ms".
    #[arg(long, env = "MOCK_CHUNK_DELAY", default_value = "0ms", value_parser = parse_duration)]
    chunk_delay: Duration,
    /// Serve answers precomputed at start-up (fastest; ignores the request's content).
    #[arg(long, env = "MOCK_FIXED")]
    fixed: bool,
    /// Require this API key from every provider (default: any non-empty key).
    #[arg(long, env = "MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Keep a log of requests in memory (grows without bound; for short manual sessions only).
    #[arg(long, env = "MOCK_RECORD")]
    record: bool,
    /// Accept requests the real providers would reject (no validation of fields and conversation rules;
    /// a missing key is fine, as on keyless OpenAI-compatible servers).
    #[arg(long, env = "MOCK_LENIENT")]
    lenient: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = MockConfig {
        tokens: args.tokens,
        chunks: args.chunks,
        chunk_delay: args.chunk_delay,
        latency: args.latency,
        record: args.record,
        fixed: args.fixed,
        context_window: None,
        strict: !args.lenient,
    };
    let mock = MockProvider::bind(args.listen, config)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    if let Some(key) = args.api_key {
        mock.expect_api_key(key);
    }
    // Scripts read the bound address from the first stdout line.
    writeln!(std::io::stdout().lock(), "listening on {}", mock.addr())
        .context("writing the address")?;
    tracing::info!(
        addr = %mock.addr(),
        providers = ?Provider::ALL.map(Provider::name),
        "mock provider ready"
    );
    tokio::select! {
        () = mock.serve() => {}
        signal = tokio::signal::ctrl_c() => signal.context("waiting for ctrl-c")?,
    }
    Ok(())
}
