//! The metering seam: what a finished request consumed, its cost, and the hook that rate limits and
//! budgets plug into (admission before the upstream call, settlement after the last byte).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_crds::config::PriceConfig;

use crate::api::openai::Usage;
use crate::auth::Key;
use crate::config::{Backend, Route};
use crate::error::GatewayError;
use crate::metrics::TokenCounts;

/// Token counts from a provider's usage report.
pub fn token_counts(usage: &Usage) -> TokenCounts {
    TokenCounts {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        cached_input: usage.cached_tokens(),
    }
}

/// Cost in US dollars: uncached input, cached input and output at their prices per million tokens.
pub fn cost_usd(pricing: &PriceConfig, tokens: &TokenCounts) -> f64 {
    let cached = tokens.cached_input.min(tokens.input);
    let uncached = tokens.input - cached;
    (uncached as f64 * pricing.input_per_million
        + cached as f64 * pricing.cached_input_per_million
        + tokens.output as f64 * pricing.output_per_million)
        / 1_000_000.0
}

/// A request about to be sent upstream.
#[derive(Debug)]
pub struct Admission<'a> {
    pub request_id: &'a str,
    pub key: &'a Arc<Key>,
    pub route: &'a Arc<Route>,
    /// The output bound the request carries, if any (for reservations).
    pub max_output_tokens: Option<u32>,
    pub streaming: bool,
}

/// A finished request (completed, failed upstream, or cut short by the client).
#[derive(Debug)]
pub struct UsageRecord<'a> {
    pub request_id: &'a str,
    pub key: &'a Arc<Key>,
    pub route: &'a Arc<Route>,
    /// The backend that produced the response (absent when every attempt failed before one answered).
    pub backend: Option<&'a Arc<Backend>>,
    /// Provider-reported usage; `None` when it reported none (a cut stream, an error).
    pub usage: Option<&'a Usage>,
    pub cost_usd: Option<f64>,
    pub status: u16,
    pub streamed: bool,
    /// The response reached its natural end (false: client disconnect or upstream failure mid-stream).
    pub complete: bool,
    pub attempts: u32,
    pub duration: Duration,
}

/// Admission and settlement hook. The default admits everything and settles nothing; rate limits and
/// budgets implement it.
pub trait Meter: Send + Sync + fmt::Debug + 'static {
    /// Decides whether the request may go upstream (reserve tokens or money here). An error is returned to
    /// the client as is (e.g. 429 with `Retry-After`).
    fn admit(&self, admission: &Admission<'_>) -> Result<(), GatewayError> {
        let _ = admission;
        Ok(())
    }

    /// Called exactly once per admitted request, when its response has ended.
    fn settle(&self, record: &UsageRecord<'_>) {
        let _ = record;
    }
}

/// The meter that admits everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMeter;

impl Meter for NoMeter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_splits_cached_input() {
        let pricing = PriceConfig {
            input_per_million: 2.5,
            output_per_million: 10.0,
            cached_input_per_million: 1.25,
        };
        let tokens = TokenCounts {
            input: 1_000_000,
            output: 100_000,
            cached_input: 400_000,
        };
        let cost = cost_usd(&pricing, &tokens);
        assert!(
            (cost - (0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0)).abs() < 1e-9,
            "{cost}"
        );
        let odd = TokenCounts {
            input: 10,
            output: 0,
            cached_input: 20,
        };
        assert!(
            cost_usd(&pricing, &odd) >= 0.0,
            "cached above input is clamped"
        );
    }
}
