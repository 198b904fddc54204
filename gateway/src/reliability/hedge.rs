//! Hedged requests: when to send a second attempt while the first is still pending (a fixed delay or
//! the primary backend's observed p95), and the budget that keeps hedges a bounded share of requests.
//!
//! At most one hedge per request, for its first attempt: hedging is about a slow tail, not failures
//! (those are retried). The budget is per route, since the route owns the hedge policy.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_crds::config::{HedgeConfig, HedgeDelay};
use tokio::time::Instant;

use super::latency::LatencyHistogram;
use super::window::{SlidingWindow, WindowCounts};

/// Window over which hedges are compared with requests.
pub const HEDGE_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Floor of a p95-derived delay: below a millisecond the hedge would race the first attempt's own
/// connection setup and buy nothing.
pub const MIN_P95_DELAY: Duration = Duration::from_millis(1);

/// The quantile the `p95` delay uses.
const P95: f64 = 0.95;

/// When to hedge a first attempt started at `started`, or `None` when this request is not hedged: the
/// route has no hedge policy, the `p95` policy has too few samples yet, or the hedge would fire at or
/// after the request's deadline.
pub fn hedge_at(
    config: Option<&HedgeConfig>,
    primary_latency: &LatencyHistogram,
    started: Instant,
    deadline: Instant,
) -> Option<Instant> {
    let delay = match config?.delay {
        HedgeDelay::Fixed { ms } => Duration::from_millis(ms),
        HedgeDelay::P95 => primary_latency.quantile(P95)?.max(MIN_P95_DELAY),
    };
    let at = started + delay;
    (at < deadline).then_some(at)
}

/// A route's hedge budget: hedges ≤ `maxPercent` of the requests in the last 10 s. There is no minimum
/// allowance: a hedge is an optimisation, and a quiet route does not need one to be served.
#[derive(Debug)]
pub struct HedgeBudget {
    /// `requests`: requests on a hedged route; `marked`: hedges sent.
    window: Mutex<SlidingWindow>,
}

impl Default for HedgeBudget {
    fn default() -> Self {
        Self {
            window: Mutex::new(SlidingWindow::new(HEDGE_BUDGET_WINDOW)),
        }
    }
}

impl HedgeBudget {
    /// Counts a request on the route (only routes with a hedge policy need to).
    pub fn deposit(&self, now: Instant) {
        self.lock().add(now, 1, 0);
    }

    /// Takes one hedge out of the budget if it stays within `max_percent` of the window's requests.
    pub fn try_withdraw(&self, max_percent: u32, now: Instant) -> bool {
        let mut window = self.lock();
        let WindowCounts { requests, marked } = window.sum(now);
        let within =
            (marked + 1).saturating_mul(100) <= requests.saturating_mul(max_percent.into());
        if within {
            window.add(now, 0, 1);
        }
        within
    }

    /// Requests and hedges in the current window.
    pub fn usage(&self, now: Instant) -> WindowCounts {
        self.lock().sum(now)
    }

    fn lock(&self) -> MutexGuard<'_, SlidingWindow> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(ms: u64) -> HedgeConfig {
        HedgeConfig {
            delay: HedgeDelay::Fixed { ms },
            max_percent: 10,
        }
    }

    const P95_POLICY: HedgeConfig = HedgeConfig {
        delay: HedgeDelay::P95,
        max_percent: 10,
    };

    #[test]
    fn hedge_delay_table() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        let empty = LatencyHistogram::default();
        let slow_tail = LatencyHistogram::default();
        for i in 0..100 {
            let ms = if i < 90 { 50 } else { 800 };
            slow_tail.observe(Duration::from_millis(ms), start);
        }
        let tiny = LatencyHistogram::default();
        for _ in 0..100 {
            tiny.observe(Duration::from_micros(40), start);
        }
        let ms = Duration::from_millis;
        let cases: [(Option<HedgeConfig>, &LatencyHistogram, Option<Instant>); 6] = [
            (None, &slow_tail, None),
            (Some(fixed(200)), &empty, Some(start + ms(200))),
            (Some(P95_POLICY), &empty, None),
            // A p95 of 800 ms is reported as the upper edge of its bucket, 13·2¹⁶ − 1 µs (6.5 % late).
            (
                Some(P95_POLICY),
                &slow_tail,
                Some(start + Duration::from_micros(851_967)),
            ),
            (Some(P95_POLICY), &tiny, Some(start + MIN_P95_DELAY)),
            (Some(fixed(30_000)), &empty, None),
        ];
        for (config, latency, expected) in cases {
            assert_eq!(
                hedge_at(config.as_ref(), latency, start, deadline),
                expected,
                "{config:?}"
            );
        }
    }

    #[test]
    fn budget_allows_max_percent_of_requests() {
        let budget = HedgeBudget::default();
        let start = Instant::now();
        assert!(!budget.try_withdraw(10, start), "no requests, no hedges");
        for _ in 0..9 {
            budget.deposit(start);
        }
        assert!(
            !budget.try_withdraw(10, start),
            "9 requests < 1 hedge at 10 %"
        );
        budget.deposit(start);
        assert!(budget.try_withdraw(10, start));
        assert!(!budget.try_withdraw(10, start));
        for _ in 0..20 {
            budget.deposit(start);
        }
        assert!(budget.try_withdraw(10, start));
        assert!(budget.try_withdraw(10, start));
        assert!(!budget.try_withdraw(10, start));
        assert_eq!(
            budget.usage(start),
            WindowCounts {
                requests: 30,
                marked: 3
            }
        );
        // Requests and hedges leave the window together.
        let later = start + HEDGE_BUDGET_WINDOW;
        assert!(!budget.try_withdraw(10, later));
        for _ in 0..10 {
            budget.deposit(later);
        }
        assert!(budget.try_withdraw(10, later));
    }
}
