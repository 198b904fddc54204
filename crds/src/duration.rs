//! Human durations as written in manifests (`"250ms"`, `"30s"`, `"1h30m"`), the subset of Go's
//! `time.ParseDuration` that the CRD schema's pattern admits, so the API server and Rust agree.

use std::time::Duration;

/// The OpenAPI pattern every duration field carries; keep in sync with [`parse`].
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a number with a unit (ms, s, m, h), e.g. \"250ms\" or \"1h30m\""
)]
pub struct ParseDurationError {
    input: String,
}

/// Parses a duration such as `"1.5s"` or `"1h30m"`.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let error = || ParseDurationError {
        input: input.to_owned(),
    };
    if input.is_empty() {
        return Err(error());
    }
    let bytes = input.as_bytes();
    let mut total_ms = 0f64;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = input[start..i].parse().map_err(|_| error())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &input[unit_start..i] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(error()),
        };
        total_ms += number * unit_ms;
    }
    Ok(Duration::from_micros((total_ms * 1_000.0).round() as u64))
}

/// Formats a duration in the same syntax (whole milliseconds).
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) && ms > 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_schema_admits() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("1.5s", 1_500),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("0s", 0),
        ];
        for (input, ms) in cases {
            assert_eq!(parse(input), Ok(Duration::from_millis(ms)), "{input}");
        }
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for input in ["", "5", "5 s", "s", "5sec", "-1s", "1d"] {
            assert!(parse(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 250, 1_000, 90_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
