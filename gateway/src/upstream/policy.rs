//! Pure retry decisions: which failures move on to another attempt, and how long to wait first.

use std::time::Duration;

use sluice_crds::config::RetryConfig;
use sluice_crds::v1alpha1::RetryOn;

use crate::error::GatewayError;
use crate::providers::UpstreamErrorKind;

/// The retry class of a failure, matched against a route's `retryOn`. `None`: the request itself is at
/// fault (invalid, filtered), so no attempt anywhere can succeed.
pub fn retry_class(error: &GatewayError) -> Option<RetryOn> {
    match error {
        GatewayError::Transport(transport) if transport.is_timeout() => Some(RetryOn::Timeout),
        GatewayError::Transport(_) => Some(RetryOn::ConnectError),
        GatewayError::Upstream(upstream) => match upstream.kind {
            UpstreamErrorKind::RateLimited | UpstreamErrorKind::QuotaExceeded => {
                Some(RetryOn::RateLimited)
            }
            UpstreamErrorKind::Timeout => Some(RetryOn::Timeout),
            UpstreamErrorKind::ContextLengthExceeded => Some(RetryOn::ContextLength),
            // A backend's own credentials or model being wrong is a backend failure: another may work.
            UpstreamErrorKind::Overloaded
            | UpstreamErrorKind::Server
            | UpstreamErrorKind::Protocol
            | UpstreamErrorKind::Auth
            | UpstreamErrorKind::NotFound => Some(RetryOn::ServerError),
            UpstreamErrorKind::ContentFilter | UpstreamErrorKind::BadRequest => None,
        },
        _ => None,
    }
}

/// Whether a failed attempt should be followed by another one (when attempts remain).
///
/// A request the chosen provider cannot express (a feature it lacks, a broken backend target) always
/// moves on: the next backend may be a provider that can, and nothing was sent upstream.
pub fn should_retry(policy: &RetryConfig, error: &GatewayError) -> bool {
    if let GatewayError::Translate(_) = error {
        return true;
    }
    if let GatewayError::Upstream(upstream) = error
        && let Some(code) = &upstream.provider_code
        && policy.provider_error_codes.iter().any(|c| c == code)
    {
        return true;
    }
    retry_class(error).is_some_and(|class| policy.retry_on.contains(&class))
}

/// Delay before re-trying a backend that already failed in this request: full jitter over an exponential
/// bound (`initialBackoff · 2^n`, capped by `maxBackoff`), or the provider's `Retry-After` when it asked
/// for longer (up to `retryAfterCap`). `None`: the provider asked for longer than the cap, so this
/// backend is not retried. `unit` is a uniform sample in `[0, 1)`.
pub fn backoff(
    policy: &RetryConfig,
    retry_number: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let exponent = retry_number.min(20);
    let bound = policy
        .initial_backoff_ms
        .saturating_mul(1 << exponent)
        .min(policy.max_backoff_ms);
    let jittered = Duration::from_millis((bound as f64 * unit.clamp(0.0, 1.0)) as u64);
    match retry_after {
        Some(asked) if asked > Duration::from_millis(policy.retry_after_cap_ms) => None,
        Some(asked) => Some(asked.max(jittered)),
        None => Some(jittered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RequestError;
    use crate::providers::{TranslateError, UpstreamError};
    use crate::upstream::TransportError;

    fn policy(retry_on: Vec<RetryOn>) -> RetryConfig {
        RetryConfig {
            attempts: 3,
            retry_on,
            provider_error_codes: vec!["server_is_sleepy".into()],
            initial_backoff_ms: 50,
            max_backoff_ms: 2_000,
            retry_after_cap_ms: 10_000,
            budget_percent: 20,
        }
    }

    fn upstream(kind: UpstreamErrorKind) -> GatewayError {
        GatewayError::Upstream(UpstreamError::new(kind, 500, "detail"))
    }

    #[test]
    fn which_failures_retry() {
        let all = policy(vec![
            RetryOn::ConnectError,
            RetryOn::Timeout,
            RetryOn::ServerError,
            RetryOn::RateLimited,
            RetryOn::ContextLength,
        ]);
        let only_5xx = policy(vec![RetryOn::ServerError]);
        let cases: Vec<(GatewayError, bool, bool)> = vec![
            (
                GatewayError::Transport(TransportError::Connect("refused".into())),
                true,
                false,
            ),
            (
                GatewayError::Transport(TransportError::FirstByteTimeout(Duration::from_secs(1))),
                true,
                false,
            ),
            (upstream(UpstreamErrorKind::Server), true, true),
            (upstream(UpstreamErrorKind::Overloaded), true, true),
            (upstream(UpstreamErrorKind::Auth), true, true),
            (upstream(UpstreamErrorKind::RateLimited), true, false),
            (
                upstream(UpstreamErrorKind::ContextLengthExceeded),
                true,
                false,
            ),
            (upstream(UpstreamErrorKind::BadRequest), false, false),
            (upstream(UpstreamErrorKind::ContentFilter), false, false),
            (
                GatewayError::InvalidRequest(RequestError::new("bad")),
                false,
                false,
            ),
            (
                GatewayError::Translate(TranslateError::InvalidTarget("x".into())),
                true,
                true,
            ),
            (
                GatewayError::Upstream(
                    UpstreamError::new(UpstreamErrorKind::BadRequest, 400, "")
                        .with_code(Some("server_is_sleepy".into())),
                ),
                true,
                true,
            ),
        ];
        for (error, with_all, with_5xx) in cases {
            assert_eq!(
                should_retry(&all, &error),
                with_all,
                "{error:?} with every class"
            );
            assert_eq!(
                should_retry(&only_5xx, &error),
                with_5xx,
                "{error:?} with 5xx only"
            );
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = policy(vec![]);
        assert_eq!(
            backoff(&p, 0, None, 0.999_999),
            Some(Duration::from_millis(49))
        );
        assert_eq!(backoff(&p, 3, None, 0.5), Some(Duration::from_millis(200)));
        assert_eq!(
            backoff(&p, 30, None, 0.999_999),
            Some(Duration::from_millis(1_999)),
            "capped by maxBackoff"
        );
        assert_eq!(backoff(&p, 0, None, 0.0), Some(Duration::ZERO));
        assert_eq!(
            backoff(&p, 0, Some(Duration::from_secs(3)), 0.5),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            backoff(&p, 0, Some(Duration::from_secs(11)), 0.5),
            None,
            "longer than the cap: go elsewhere"
        );
    }
}
