//! Server-wide settings of a mock upstream: defaults every response uses unless a behaviour overrides them.

use std::time::Duration;

/// Words in a reply when `tokens` is set but no behaviour says otherwise; small so test output stays readable.
pub const DEFAULT_GENERATED_TOKENS: usize = 16;

/// Dimensions of a mock embedding when the request does not ask for a size. Real models use 768–3072; a test
/// only needs a stable, short vector.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 16;

/// Settings shared by every request a [`MockProvider`](super::MockProvider) serves.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Reply with this many generated words instead of echoing the prompt.
    pub tokens: Option<usize>,
    /// Split the streamed text into this many content events (default: one event per word).
    pub chunks: Option<usize>,
    /// Pause before every streamed event after the first.
    pub chunk_delay: Duration,
    /// Pause before the response head of every request (time to first byte).
    pub latency: Duration,
    /// Keep a log of requests for [`MockProvider::requests`](super::MockProvider::requests). Long-running
    /// load generators turn it off so memory stays flat.
    pub record: bool,
    /// Answer with responses precomputed at start-up, ignoring the request's content and the behaviour
    /// rules: the cheapest path, for benchmarks.
    pub fixed: bool,
    /// Reject the request with the provider's "context length exceeded" error when its prompt has more
    /// words than this.
    pub context_window: Option<u64>,
    /// Reject requests the real provider would reject (missing `max_tokens`, unanswered tool calls, …).
    pub strict: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            tokens: None,
            chunks: None,
            chunk_delay: Duration::ZERO,
            latency: Duration::ZERO,
            record: true,
            fixed: false,
            context_window: None,
            strict: true,
        }
    }
}

/// Error for a duration string that [`parse_duration`] cannot read.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a number followed by us, ms, s or m (e.g. \"250ms\")"
)]
pub struct ParseDurationError {
    input: String,
}

/// Parses a human duration such as `"0"`, `"250ms"`, `"1.5s"`, `"2m"` or `"500us"`.
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let error = || ParseDurationError {
        input: input.to_owned(),
    };
    let trimmed = input.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(error)?;
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| error())?;
    let seconds_per_unit = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(error()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations() {
        for (input, expected) in [
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("500us", Duration::from_micros(500)),
        ] {
            assert_eq!(parse_duration(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_durations_without_a_known_unit() {
        for input in ["", "5", "ms", "5h", "-1s", "1..2s"] {
            assert!(parse_duration(input).is_err(), "{input}");
        }
    }
}
