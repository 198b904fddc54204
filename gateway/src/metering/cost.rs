//! Cost of tokens at a backend's prices, and the most a request may cost before it is sent.
//!
//! Prices come from the compiled backend (`pricing`), which the compiler fills from the route's
//! `backends[].pricing` or, when unset, the built-in table (`sluice_crds::pricing`). A backend with no
//! price costs nothing: it is counted in tokens only.

use sluice_crds::config::PriceConfig;
use sluice_crds::usage::{NanoUsd, nano_usd};

use crate::config::Route;
use crate::metrics::TokenCounts;

/// Output tokens reserved for a request that sets no bound, when its backends publish no context window.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4_096;

/// Cost in US dollars: uncached input, cached input and output at their prices per million tokens.
pub fn cost_usd(pricing: &PriceConfig, tokens: &TokenCounts) -> f64 {
    let cached = tokens.cached_input.min(tokens.input);
    let uncached = tokens.input - cached;
    (uncached as f64 * pricing.input_per_million
        + cached as f64 * pricing.cached_input_per_million
        + tokens.output as f64 * pricing.output_per_million)
        / 1_000_000.0
}

/// [`cost_usd`] in nano-dollars (`None` pricing costs nothing).
pub fn cost_nano(pricing: Option<&PriceConfig>, tokens: &TokenCounts) -> NanoUsd {
    pricing.map_or(0, |pricing| nano_usd(cost_usd(pricing, tokens)))
}

/// The output bound a reservation assumes: the request's own, else the smallest context window of the
/// route's backends, else [`DEFAULT_MAX_OUTPUT_TOKENS`].
pub fn max_output_tokens(route: &Route, requested: Option<u32>) -> u64 {
    if let Some(requested) = requested {
        return u64::from(requested);
    }
    route
        .backends
        .iter()
        .filter_map(|backend| backend.config.context_window)
        .min()
        .map_or(DEFAULT_MAX_OUTPUT_TOKENS, |window| {
            window.min(DEFAULT_MAX_OUTPUT_TOKENS * 8)
        })
}

/// The most `input` prompt tokens and `output` completion tokens can cost on any backend of the route
/// (a fallback may land on the priciest one).
pub fn max_cost_nano(route: &Route, input: u64, output: u64) -> NanoUsd {
    let tokens = TokenCounts {
        input,
        output,
        cached_input: 0,
    };
    route
        .backends
        .iter()
        .map(|backend| cost_nano(backend.config.pricing.as_ref(), &tokens))
        .max()
        .unwrap_or(0)
}

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
        // One gpt-4o output token is 10,000 nano-dollars.
        let one = TokenCounts {
            output: 1,
            ..TokenCounts::default()
        };
        assert_eq!(cost_nano(Some(&pricing), &one), 10_000);
        assert_eq!(cost_nano(None, &one), 0);
    }
}
