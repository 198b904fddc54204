//! Shadow traffic: a sampled copy of a chat request goes to a route's shadow backend in a task of its own.
//! The client never waits for it and never sees its answer; its outcome, latency and cost land in the
//! `sluice_shadow_*` metrics only, and nothing about it is billed.
//!
//! Copies are sent non-streaming (so the answer's usage can be accounted), after PII redaction, only to a
//! backend in the request's allowed regions, with the route's total timeout, and at most
//! [`MAX_IN_FLIGHT`] at once per route: a slow shadow backend sheds copies instead of piling up tasks.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::openai::ChatRequest;
use crate::config::{Backend, Route};
use crate::metering::{cost_usd, token_counts};
use crate::policy_metrics::PolicyMetrics;
use crate::providers;
use crate::routing::region_allowed;

/// Most copies in flight per route.
pub const MAX_IN_FLIGHT: usize = 64;
/// Largest shadow answer read (anything longer is counted as an error and dropped).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A route's shadow backend and the share of requests it receives.
#[derive(Debug)]
pub struct ShadowTarget {
    pub backend: Arc<Backend>,
    /// Percent of requests mirrored, 1–100.
    pub percent: u32,
    permits: Arc<Semaphore>,
}

impl ShadowTarget {
    pub fn new(backend: Arc<Backend>, percent: u32) -> Self {
        Self {
            backend,
            percent,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

/// Whether a request falls in the mirrored share of `percent`; `draw` is uniform in `[0, 1)`.
fn sampled(percent: u32, draw: f64) -> bool {
    draw * 100.0 < f64::from(percent)
}

/// Sends a copy of `request` to the route's shadow backend when the route has one, the sample says so, the
/// backend is in the allowed regions (`key_regions` ∩ the route's) and a slot is free. Returns at once.
pub fn mirror(
    route: &Arc<Route>,
    key_regions: &[String],
    request: &ChatRequest,
    metrics: &PolicyMetrics,
) {
    let Some(target) = route.shadow.as_ref() else {
        return;
    };
    if !sampled(target.percent, rand::random::<f64>()) {
        return;
    }
    let backend = target.backend.clone();
    if !region_allowed(
        backend.region.as_deref(),
        &route.allowed_regions,
        key_regions,
    ) {
        metrics.record_shadow(&route.id, &backend.name, "skipped_region");
        return;
    }
    let Ok(permit) = target.permits.clone().try_acquire_owned() else {
        metrics.record_shadow(&route.id, &backend.name, "skipped_busy");
        return;
    };
    let mut copy = request.clone();
    copy.stream = None;
    copy.stream_options = None;
    let route_id = route.id.clone();
    let timeouts = route.timeouts;
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeouts.total, send(&backend, &copy, timeouts)).await;
        let (label, cost) = match outcome {
            Ok(Ok(cost)) => ("success", cost),
            Ok(Err(class)) => (class, None),
            Err(_) => ("timeout", None),
        };
        metrics.record_shadow(&route_id, &backend.name, label);
        metrics.record_shadow_done(&route_id, &backend.name, started.elapsed(), cost);
        drop(permit);
    });
}

/// One copy: returns its cost (when priced and reported) or the failure class.
async fn send(
    backend: &Backend,
    request: &ChatRequest,
    timeouts: crate::config::Timeouts,
) -> Result<Option<f64>, &'static str> {
    let upstream =
        providers::build_chat_request(&backend.target, request).map_err(|_| "translate")?;
    let response = backend
        .client
        .send(upstream, timeouts.first_byte)
        .await
        .map_err(|_| "transport")?;
    let (parts, mut body) = response.into_parts();
    if !parts.status.is_success() {
        return Err("upstream_error");
    }
    let mut collected = BytesMut::new();
    loop {
        match tokio::time::timeout(idle(timeouts), body.frame()).await {
            Err(_) => return Err("timeout"),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err("transport"),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > MAX_ANSWER_BYTES {
                        return Err("too_large");
                    }
                    collected.extend_from_slice(&data);
                }
            }
        }
    }
    let completion =
        providers::parse_chat_response(backend.provider, &collected, providers::unix_now())
            .map_err(|_| "invalid_answer")?;
    Ok(completion.usage.as_ref().and_then(|usage| {
        backend
            .config
            .pricing
            .as_ref()
            .map(|pricing| cost_usd(pricing, &token_counts(usage)))
    }))
}

fn idle(timeouts: crate::config::Timeouts) -> Duration {
    timeouts.idle.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::sampled;

    #[test]
    fn sampling_follows_the_percentage() {
        let share = |percent: u32| {
            (0..1000)
                .filter(|i| sampled(percent, f64::from(*i) / 1000.0))
                .count()
        };
        assert_eq!(share(10), 100);
        assert_eq!(share(100), 1000);
        assert_eq!(share(1), 10);
    }
}
