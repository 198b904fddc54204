//! Retry budget: retries allowed as a percentage of recent requests, so an outage never multiplies load.
//!
//! One budget per backend (the CRD's `budgetPercent` says "per backend, over 10 s"). A request deposits
//! into the budget of the backend its first attempt went to, and every retry of that request — whichever
//! backend it goes to — withdraws from the same budget. Charging the first backend rather than the one a
//! retry lands on matters for priority failover: the fallback backend sees no first attempts of its own,
//! so a budget of its own would never let the primary's requests fail over.
//!
//! The bound, per backend and per window-aligned stretch of [`RETRY_BUDGET_WINDOW`]:
//! `retries ≤ budget_percent/100 × requests + min_retries`. Summed over a run of `T` seconds:
//! `attempts ≤ (1 + budget) × requests + min_retries × ⌈T / 10 s⌉` for each backend that took first
//! attempts. The minimum exists so that a backend with little traffic can still fall back at all.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::window::{SlidingWindow, WindowCounts};

/// Window over which retries are compared with requests.
pub const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Retries allowed per window whatever the traffic: a single request with the default three attempts
/// needs two, and ten covers a handful of requests a second on a backend that has just died (its
/// breaker then stops first attempts from reaching it).
pub const DEFAULT_MIN_RETRIES: u64 = 10;

/// The budget of one backend.
#[derive(Debug)]
pub struct RetryBudget {
    /// `requests`: first attempts; `marked`: retries.
    window: Mutex<SlidingWindow>,
    min_retries: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::with_min_retries(DEFAULT_MIN_RETRIES)
    }
}

impl RetryBudget {
    /// A budget that always allows `min_retries` per window on top of the percentage.
    pub fn with_min_retries(min_retries: u64) -> Self {
        Self {
            window: Mutex::new(SlidingWindow::new(RETRY_BUDGET_WINDOW)),
            min_retries,
        }
    }

    /// Counts a request whose first attempt goes to this backend.
    pub fn deposit(&self, now: Instant) {
        self.lock().add(now, 1, 0);
    }

    /// Takes one retry out of the budget if `budget_percent` of the window's requests (plus the
    /// minimum) allow it; `false` means the request must not be retried. A budget of 0 % allows no
    /// retries at all, the minimum included: it is how a route says "never retry".
    pub fn try_withdraw(&self, budget_percent: u32, now: Instant) -> bool {
        if budget_percent == 0 {
            return false;
        }
        let mut window = self.lock();
        let WindowCounts { requests, marked } = window.sum(now);
        let allowed = self
            .min_retries
            .saturating_add(requests.saturating_mul(budget_percent.into()) / 100);
        if marked >= allowed {
            return false;
        }
        window.add(now, 0, 1);
        true
    }

    /// Requests and retries in the current window, for metrics and status.
    pub fn usage(&self, now: Instant) -> WindowCounts {
        self.lock().sum(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlidingWindow> {
        // The window is plain counters: a panic elsewhere cannot leave it inconsistent.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_request_on_an_idle_backend_can_still_fall_back() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        budget.deposit(now);
        assert!(budget.try_withdraw(20, now));
        assert!(budget.try_withdraw(20, now));
    }

    #[test]
    fn zero_percent_never_retries() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        assert!(!budget.try_withdraw(0, now));
    }

    #[test]
    fn exhaustion_and_refill() {
        let budget = RetryBudget::with_min_retries(2);
        let start = Instant::now();
        for _ in 0..100 {
            budget.deposit(start);
        }
        // 20 % of 100 requests + the minimum of 2.
        let granted = (0..50).filter(|_| budget.try_withdraw(20, start)).count();
        assert_eq!(granted, 22);
        assert!(!budget.try_withdraw(20, start + Duration::from_secs(9)));
        // The retries age out with the requests: a fresh window has only the minimum...
        let later = start + RETRY_BUDGET_WINDOW;
        assert_eq!(budget.usage(later), WindowCounts::default());
        assert!(budget.try_withdraw(20, later));
        assert!(budget.try_withdraw(20, later));
        assert!(!budget.try_withdraw(20, later));
        // ...and new traffic refills it.
        for _ in 0..10 {
            budget.deposit(later);
        }
        assert!(budget.try_withdraw(20, later));
        assert!(budget.try_withdraw(20, later));
        assert!(!budget.try_withdraw(20, later));
        assert_eq!(
            budget.usage(later),
            WindowCounts {
                requests: 10,
                marked: 4
            }
        );
    }

    /// Every attempt fails and every request wants two retries: over a long run the retries granted
    /// stay within the documented bound.
    #[tokio::test(start_paused = true)]
    async fn attempts_stay_within_one_plus_budget_times_requests() {
        let budget = RetryBudget::default();
        let percent = 20;
        let start = Instant::now();
        let (mut requests, mut attempts) = (0u64, 0u64);
        // 50 requests a second for a minute.
        for _ in 0..3_000 {
            tokio::time::advance(Duration::from_millis(20)).await;
            let now = Instant::now();
            budget.deposit(now);
            requests += 1;
            attempts += 1;
            for _ in 0..2 {
                if !budget.try_withdraw(percent, now) {
                    break;
                }
                attempts += 1;
            }
        }
        let windows = (Instant::now() - start).as_secs().div_ceil(10) + 1;
        let bound = requests + requests * u64::from(percent) / 100 + DEFAULT_MIN_RETRIES * windows;
        assert!(attempts <= bound, "{attempts} attempts > bound {bound}");
        // The budget is actually used, not just never granted.
        assert!(
            attempts >= requests + requests * u64::from(percent) / 100,
            "{attempts} attempts for {requests} requests"
        );
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let budget = RetryBudget::with_min_retries(0);
        let now = Instant::now();
        for _ in 0..1_000 {
            budget.deposit(now);
        }
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        if budget.try_withdraw(10, now) {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 100);
    }
}
