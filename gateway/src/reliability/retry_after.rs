//! Provider retry hints (`Retry-After` in seconds or as an HTTP-date, `retry-after-ms`, exhausted
//! rate-limit resets) and whether a failed backend is worth another try within the same request.

use std::time::{Duration, SystemTime};

use chrono::DateTime;
use http::HeaderMap;
use sluice_crds::config::RetryConfig;

use crate::upstream::policy::backoff;

/// Rate-limit headers that come in pairs: when `remaining` is 0, `reset` says when the limit refills.
/// OpenAI, Azure OpenAI and most OpenAI-compatible providers send the `x-ratelimit-*` pairs with Go
/// durations (`6m0s`); Anthropic sends the `anthropic-ratelimit-*` pairs with RFC 3339 timestamps.
const LIMIT_PAIRS: [(&str, &str); 6] = [
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ),
    (
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
    ),
    (
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
    ),
    (
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
    ),
];

/// A bare number above this in a reset header is a Unix time, not a number of seconds (it would be
/// more than 30 years).
const UNIX_TIME_THRESHOLD: f64 = 1.0e9;

/// The provider's hint of when to try again, relative to `now` (the wall clock when the response
/// arrived). In order of precision: `retry-after-ms`, `Retry-After` (delta-seconds or HTTP-date; a
/// date in the past means "now"), then the latest reset among the rate limits reported as exhausted.
/// `None`: the provider gave no usable hint.
pub fn retry_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(millis) = header("retry-after-ms").and_then(parse_seconds) {
        return Some(millis / 1000);
    }
    if let Some(hint) = header("retry-after").and_then(|value| parse_retry_after(value, now)) {
        return Some(hint);
    }
    LIMIT_PAIRS
        .iter()
        .filter(|(remaining, _)| {
            header(remaining).is_some_and(|value| value.trim().parse::<f64>() == Ok(0.0))
        })
        .filter_map(|(_, reset)| header(reset).and_then(|value| parse_reset(value, now)))
        .max()
}

/// `Retry-After: <delta-seconds>` or `Retry-After: <HTTP-date>` (IMF-fixdate, RFC 850 or asctime, as
/// RFC 9110 §10.2.3 requires a recipient to accept). Fractional seconds are accepted because some
/// providers send them.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    parse_seconds(value).or_else(|| {
        httpdate::parse_http_date(value)
            .ok()
            .map(|date| until(date, now))
    })
}

/// A reset header: a Go duration (`1m30.5s`, `20ms`), seconds, a Unix time, or an RFC 3339 timestamp.
fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(number) = value.parse::<f64>() {
        if number >= UNIX_TIME_THRESHOLD {
            return Some(until(SystemTime::UNIX_EPOCH + secs(number)?, now));
        }
        return secs(number);
    }
    if let Some(duration) = parse_go_duration(value) {
        return Some(duration);
    }
    let at = DateTime::parse_from_rfc3339(value).ok()?;
    Some(until(at.into(), now))
}

/// `6m0s`, `1h2m3.5s`, `250ms`, `0.5s`: the format Go's `time.Duration` prints, used by OpenAI.
fn parse_go_duration(value: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("h", 3600.0),
        ("m", 60.0),
        ("s", 1.0),
    ];
    let mut rest = value;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let (unit, scale) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        seconds += number * scale;
        rest = &rest[unit.len()..];
    }
    secs(seconds)
}

/// Non-negative, finite seconds.
fn parse_seconds(value: &str) -> Option<Duration> {
    value.trim().parse::<f64>().ok().and_then(secs)
}

fn secs(seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(seconds).ok()
}

/// Time from `now` to `at`; zero when `at` has passed.
fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// How a failure bears on trying the same backend again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A transient fault (connection, timeout, 5xx, overload): back off exponentially, longer if the
    /// provider asked for it.
    Transient,
    /// The backend's rate limit: only its own hint says when it has capacity again, so without one
    /// the request moves on instead of hammering it.
    RateLimited,
    /// Nothing will change within this request (exhausted quota, rejected credentials, unknown model,
    /// a request the provider cannot express, a context window too small).
    Permanent,
}

/// Whether the backend that just failed may be tried again in this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameBackend {
    /// Yes, once this much time has passed.
    After(Duration),
    /// No: move on to the next backend.
    Never,
}

/// Decides [`SameBackend`] for the `failures`-th failure (0 for the first) of one backend in one
/// request. A hint above the route's `retryAfterCap` sends the request elsewhere rather than making
/// it wait; `unit` is a uniform sample in `[0, 1)` for the backoff's jitter.
pub fn same_backend(
    policy: &RetryConfig,
    recovery: Recovery,
    failures: u32,
    hint: Option<Duration>,
    unit: f64,
) -> SameBackend {
    let resume =
        |hint| backoff(policy, failures, hint, unit).map_or(SameBackend::Never, SameBackend::After);
    match (recovery, hint) {
        (Recovery::Permanent, _) | (Recovery::RateLimited, None) => SameBackend::Never,
        (Recovery::RateLimited, Some(hint)) => resume(Some(hint)),
        (Recovery::Transient, hint) => resume(hint),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use sluice_crds::v1alpha1::RetryOn;

    use super::*;

    /// 2024-06-01T12:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_717_243_200)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn retry_after_forms() {
        let cases: [(&str, Option<Duration>); 11] = [
            ("120", Some(Duration::from_secs(120))),
            (" 3 ", Some(Duration::from_secs(3))),
            ("1.5", Some(Duration::from_millis(1_500))),
            ("0", Some(Duration::ZERO)),
            // IMF-fixdate, 90 s ahead of `now`.
            (
                "Sat, 01 Jun 2024 12:01:30 GMT",
                Some(Duration::from_secs(90)),
            ),
            // RFC 850 and asctime, the obsolete forms a recipient must still accept.
            (
                "Saturday, 01-Jun-24 12:00:10 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Sat Jun  1 12:00:05 2024", Some(Duration::from_secs(5))),
            // A date in the past means "now".
            ("Sat, 01 Jun 2024 11:00:00 GMT", Some(Duration::ZERO)),
            ("-5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now()), expected, "{value:?}");
        }
    }

    #[test]
    fn hints_in_order_of_precision() {
        type Pairs = &'static [(&'static str, &'static str)];
        let cases: [(Pairs, Option<Duration>); 9] = [
            (&[], None),
            (
                &[("retry-after-ms", "644"), ("retry-after", "13")],
                Some(Duration::from_millis(644)),
            ),
            (&[("retry-after", "13")], Some(Duration::from_secs(13))),
            (
                &[("retry-after", "Sat, 01 Jun 2024 12:00:20 GMT")],
                Some(Duration::from_secs(20)),
            ),
            // Only the exhausted limit's reset counts.
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1m30.5s"),
                    ("x-ratelimit-remaining-tokens", "1200"),
                    ("x-ratelimit-reset-tokens", "6m0s"),
                ],
                Some(Duration::from_millis(90_500)),
            ),
            // Both exhausted: wait for the later one.
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "20ms"),
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", "2s"),
                ],
                Some(Duration::from_secs(2)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "10"),
                    ("x-ratelimit-reset-requests", "20ms"),
                ],
                None,
            ),
            (
                &[
                    ("anthropic-ratelimit-tokens-remaining", "0"),
                    ("anthropic-ratelimit-tokens-reset", "2024-06-01T12:00:42Z"),
                ],
                Some(Duration::from_secs(42)),
            ),
            // A bare Unix time.
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1717243207"),
                ],
                Some(Duration::from_secs(7)),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(retry_hint(&headers(pairs), now()), expected, "{pairs:?}");
        }
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("1h2m3.5s", Some(Duration::from_millis(3_723_500))),
            ("250ms", Some(Duration::from_millis(250))),
            ("7µs", Some(Duration::from_micros(7))),
            ("3", None),
            ("3x", None),
            ("", None),
            ("ms", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_go_duration(value), expected, "{value:?}");
        }
    }

    fn policy() -> RetryConfig {
        RetryConfig {
            attempts: 3,
            retry_on: vec![RetryOn::ServerError, RetryOn::RateLimited],
            provider_error_codes: Vec::new(),
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            retry_after_cap_ms: 10_000,
            budget_percent: 20,
        }
    }

    #[test]
    fn which_failure_retries_the_same_backend_with_which_wait() {
        use Recovery::*;
        use SameBackend::*;
        let ms = Duration::from_millis;
        let cases = [
            // (recovery, failures so far, hint, jitter sample) → decision
            (Transient, 0, None, 0.5, After(ms(50))),
            (Transient, 2, None, 0.5, After(ms(200))),
            (Transient, 9, None, 0.5, After(ms(500))),
            (Transient, 0, Some(ms(3_000)), 0.5, After(ms(3_000))),
            (Transient, 0, Some(ms(10)), 0.5, After(ms(50))),
            (Transient, 0, Some(ms(10_001)), 0.5, Never),
            // 429: only a hint within the cap brings the request back; none means fail over.
            (RateLimited, 0, None, 0.5, Never),
            (RateLimited, 0, Some(ms(2_000)), 0.5, After(ms(2_000))),
            (RateLimited, 0, Some(ms(10_000)), 0.5, After(ms(10_000))),
            (RateLimited, 0, Some(ms(60_000)), 0.5, Never),
            (RateLimited, 0, Some(Duration::ZERO), 0.5, After(ms(50))),
            (Permanent, 0, None, 0.5, Never),
            (Permanent, 0, Some(ms(1)), 0.5, Never),
        ];
        for (recovery, failures, hint, unit, expected) in cases {
            assert_eq!(
                same_backend(&policy(), recovery, failures, hint, unit),
                expected,
                "{recovery:?} after {failures} failures with hint {hint:?}"
            );
        }
    }
}
