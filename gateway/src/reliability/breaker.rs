//! Per-backend circuit breaker: Closed → Open on consecutive failures or a high error rate, Open →
//! HalfOpen after `openFor`, where exactly one probe decides between Closed and Open again.
//!
//! The hot path is one atomic load: a closed breaker hands out permits without locking. Recording an
//! outcome takes a short mutex (a few counter updates). Every state change bumps a generation, and a
//! permit only counts in the generation it was issued in, so a slow request from before a trip cannot
//! reopen a breaker that has since recovered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_crds::config::BreakerConfig;
use tokio::time::Instant;

use super::window::{SlidingWindow, WindowCounts};
use crate::error::GatewayError;
use crate::providers::UpstreamErrorKind;

/// Where a breaker stands; the numbers are the `sluice_backend_circuit_state` gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; outcomes are counted.
    Closed = 0,
    /// One probe is (or may be) in flight; everyone else is refused.
    HalfOpen = 1,
    /// Traffic is refused until `openFor` has passed.
    Open = 2,
}

impl BreakerState {
    /// Gauge value: 0 closed, 1 half-open, 2 open (the chart's alert reads `== 2` as down).
    pub fn as_number(self) -> i64 {
        self as i64
    }

    /// Lowercase name for logs and route status.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

/// What an attempt says about the backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered properly.
    Success,
    /// The backend failed: unreachable, slow, 5xx, rate limited, misconfigured.
    Failure,
    /// Says nothing about the backend (the request was at fault, or nothing was sent).
    Neutral,
}

impl Outcome {
    /// Classifies a failed attempt. 429s count as failures: a backend that keeps rate-limiting should be
    /// left alone for a while rather than asked again by every request. Errors caused by the request
    /// (invalid, too long, filtered) are neutral: the backend did its job.
    pub fn of_error(error: &GatewayError) -> Self {
        match error {
            GatewayError::Transport(_) | GatewayError::TotalTimeout(_) => Outcome::Failure,
            GatewayError::Upstream(upstream) => match upstream.kind {
                UpstreamErrorKind::ContextLengthExceeded
                | UpstreamErrorKind::ContentFilter
                | UpstreamErrorKind::BadRequest => Outcome::Neutral,
                UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::QuotaExceeded
                | UpstreamErrorKind::Overloaded
                | UpstreamErrorKind::Timeout
                | UpstreamErrorKind::Auth
                | UpstreamErrorKind::NotFound
                | UpstreamErrorKind::Server
                | UpstreamErrorKind::Protocol => Outcome::Failure,
            },
            _ => Outcome::Neutral,
        }
    }
}

/// Counts for metrics and route status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    pub state: BreakerState,
    /// `requests` and failures (`marked`) in the error-rate window (Closed only; cleared on each change).
    pub window: WindowCounts,
    pub consecutive_failures: u32,
}

/// Low two bits of [`CircuitBreaker::word`]: the state; the rest: the generation.
const STATE_MASK: u64 = 0b11;
const GENERATION_SHIFT: u32 = 2;

/// One backend's breaker. Its configuration is passed on each call, so a reload that changes the
/// thresholds keeps the state.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// State and generation, readable without the lock; written only under it.
    word: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    generation: u64,
    state: State,
    consecutive_failures: u32,
    /// The run of failures the latest success ended: a late failure of that same attempt resumes it.
    streak_before_success: u32,
    /// `requests`: counted outcomes; `marked`: failures.
    window: SlidingWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            word: AtomicU64::new(BreakerState::Closed as u64),
            inner: Mutex::new(Inner {
                generation: 0,
                state: State::Closed,
                consecutive_failures: 0,
                streak_before_success: 0,
                window: SlidingWindow::new(Duration::ZERO),
            }),
        }
    }
}

impl CircuitBreaker {
    /// A permit to send one attempt, or `None` while the circuit is open (or its one probe is out).
    pub fn try_acquire(&self, config: &BreakerConfig, now: Instant) -> Option<Permit<'_>> {
        let word = self.word.load(Ordering::Acquire);
        if BreakerState::from_bits(word) == BreakerState::Closed {
            return Some(self.permit(*config, word >> GENERATION_SHIFT, false));
        }
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Some(self.permit(*config, inner.generation, false)),
            State::Open { until } if now < until => None,
            State::HalfOpen { probing: true } => None,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.set(&mut inner, State::HalfOpen { probing: true });
                Some(self.permit(*config, inner.generation, true))
            }
        }
    }

    /// The state as last changed (an open breaker whose time is up still reads `Open` until the next
    /// request takes the probe).
    pub fn state(&self) -> BreakerState {
        BreakerState::from_bits(self.word.load(Ordering::Acquire))
    }

    /// How long an open breaker still refuses traffic (for a `Retry-After` when every backend is open).
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        match self.lock().state {
            State::Open { until } => Some(until.saturating_duration_since(now)),
            State::Closed | State::HalfOpen { .. } => None,
        }
    }

    /// Counts for metrics and route status.
    pub fn stats(&self, now: Instant) -> BreakerStats {
        let inner = self.lock();
        BreakerStats {
            state: BreakerState::from_bits(self.word.load(Ordering::Acquire)),
            window: inner.window.sum(now),
            consecutive_failures: inner.consecutive_failures,
        }
    }

    /// Counts a failure found after the attempt was already recorded as a success: a stream that stalled
    /// or broke after its first event. The attempt becomes a failure rather than a second outcome: the
    /// window marks it failed, and the run of failures its success ended resumes, so a backend whose
    /// streams all break opens like one whose attempts all fail. Counts only while closed (it cannot
    /// decide a probe).
    pub fn record_late_failure(&self, config: &BreakerConfig, now: Instant) {
        let mut inner = self.lock();
        if inner.state != State::Closed {
            return;
        }
        Self::fit_window(&mut inner, config);
        inner.consecutive_failures = inner
            .consecutive_failures
            .max(inner.streak_before_success)
            .saturating_add(1);
        inner.streak_before_success = 0;
        inner.window.add(now, 0, 1);
        self.trip_if_due(&mut inner, config, now);
    }

    /// Restarts the window when the configured length changed (a reload).
    fn fit_window(inner: &mut Inner, config: &BreakerConfig) {
        let window = Duration::from_millis(config.window_ms);
        if !inner.window.has_length(window) {
            inner.window = SlidingWindow::new(window);
        }
    }

    fn permit(&self, config: BreakerConfig, generation: u64, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            config,
            generation,
            probe,
            settled: false,
        }
    }

    fn settle(&self, permit: &Permit<'_>, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        if inner.generation != permit.generation {
            return;
        }
        match (inner.state, permit.probe, outcome) {
            (State::HalfOpen { .. }, true, Outcome::Success) => self.close(&mut inner),
            (State::HalfOpen { .. }, true, Outcome::Failure) => {
                self.open(&mut inner, &permit.config, now);
            }
            // The probe told nothing: the next request probes instead.
            (State::HalfOpen { .. }, true, Outcome::Neutral) => {
                inner.state = State::HalfOpen { probing: false };
            }
            (State::Closed, false, outcome) => self.count(&mut inner, &permit.config, outcome, now),
            _ => {}
        }
    }

    /// Counts an outcome while closed and trips the breaker when a threshold is reached.
    fn count(&self, inner: &mut Inner, config: &BreakerConfig, outcome: Outcome, now: Instant) {
        Self::fit_window(inner, config);
        match outcome {
            Outcome::Success => {
                inner.streak_before_success = inner.consecutive_failures;
                inner.consecutive_failures = 0;
                inner.window.add(now, 1, 0);
            }
            Outcome::Failure => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                inner.window.add(now, 1, 1);
            }
            Outcome::Neutral => return,
        }
        // Only a failure opens the breaker, even when a success is what brings the window up to
        // `minRequests`: the next failure then decides.
        if outcome == Outcome::Failure {
            self.trip_if_due(inner, config, now);
        }
    }

    /// Opens the breaker when the run of failures or the window's error rate reached its threshold.
    fn trip_if_due(&self, inner: &mut Inner, config: &BreakerConfig, now: Instant) {
        let counts = inner.window.sum(now);
        let rate_tripped = counts.requests >= u64::from(config.min_requests)
            && counts.marked.saturating_mul(100)
                >= counts
                    .requests
                    .saturating_mul(config.error_rate_percent.into());
        if inner.consecutive_failures >= config.consecutive_failures.max(1) || rate_tripped {
            self.open(inner, config, now);
        }
    }

    fn open(&self, inner: &mut Inner, config: &BreakerConfig, now: Instant) {
        let until = now + Duration::from_millis(config.open_for_ms);
        self.set(inner, State::Open { until });
    }

    fn close(&self, inner: &mut Inner) {
        self.set(inner, State::Closed);
    }

    /// Changes state, starts a new generation and publishes both; counts restart from zero.
    fn set(&self, inner: &mut Inner, state: State) {
        inner.state = state;
        inner.generation += 1;
        inner.consecutive_failures = 0;
        inner.streak_before_success = 0;
        inner.window.clear();
        let public = match state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        self.word.store(
            (inner.generation << GENERATION_SHIFT) | public as u64,
            Ordering::Release,
        );
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves `Inner` consistent before anything that could panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Leave to send one attempt. Report how it went with [`Permit::record`]; a permit dropped without a
/// record (the client went away, the attempt lost a hedge race) counts as [`Outcome::Neutral`], so an
/// abandoned probe frees the half-open slot for the next request.
#[derive(Debug)]
#[must_use = "an unrecorded permit tells the breaker nothing"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    config: BreakerConfig,
    generation: u64,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Whether this is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the attempt's outcome.
    pub fn record(mut self, outcome: Outcome, now: Instant) {
        self.settled = true;
        self.breaker.settle(&self, outcome, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // Only a probe holds anything; closed-state permits that vanish simply do not count.
        if !self.settled && self.probe {
            self.breaker
                .settle(self, Outcome::Neutral, tokio::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::api::RequestError;
    use crate::providers::{TranslateError, UpstreamError};
    use crate::upstream::TransportError;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_rate_percent: 50,
            min_requests: 10,
            window_ms: 10_000,
            open_for_ms: 5_000,
        }
    }

    fn attempt(breaker: &CircuitBreaker, outcome: Outcome, now: Instant) -> bool {
        match breaker.try_acquire(&config(), now) {
            Some(permit) => {
                permit.record(outcome, now);
                true
            }
            None => false,
        }
    }

    #[test]
    fn opens_on_consecutive_failures() {
        let breaker = CircuitBreaker::default();
        let now = Instant::now();
        assert!(attempt(&breaker, Outcome::Failure, now));
        assert!(attempt(&breaker, Outcome::Failure, now));
        assert!(
            attempt(&breaker, Outcome::Success, now),
            "a success resets the run"
        );
        assert!(attempt(&breaker, Outcome::Failure, now));
        assert!(attempt(&breaker, Outcome::Neutral, now), "neutral keeps it");
        assert!(attempt(&breaker, Outcome::Failure, now));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(attempt(&breaker, Outcome::Failure, now));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!attempt(&breaker, Outcome::Success, now));
        assert_eq!(
            breaker.open_for(now + Duration::from_secs(1)),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn opens_on_error_rate_once_enough_requests_were_seen() {
        let breaker = CircuitBreaker::default();
        let start = Instant::now();
        // S F S F …: never 3 failures in a row.
        for i in 0..9 {
            let outcome = if i % 2 == 1 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert!(attempt(&breaker, outcome, start));
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "9 < minRequests");
        let steps = [
            (Outcome::Success, BreakerState::Closed, "4 of 10 failed"),
            (Outcome::Failure, BreakerState::Closed, "5 of 11 failed"),
            (Outcome::Failure, BreakerState::Open, "6 of 12 failed: 50 %"),
        ];
        for (outcome, state, why) in steps {
            assert!(attempt(&breaker, outcome, start));
            assert_eq!(breaker.state(), state, "{why}");
        }
        assert_eq!(
            breaker.stats(start).window,
            WindowCounts::default(),
            "counts restart when it opens"
        );
    }

    #[test]
    fn only_a_failure_opens_it() {
        let config = BreakerConfig {
            consecutive_failures: 100,
            min_requests: 4,
            ..config()
        };
        let breaker = CircuitBreaker::default();
        let now = Instant::now();
        let send = |outcome| {
            if let Some(permit) = breaker.try_acquire(&config, now) {
                permit.record(outcome, now);
            }
            breaker.state()
        };
        assert_eq!(send(Outcome::Failure), BreakerState::Closed);
        assert_eq!(send(Outcome::Failure), BreakerState::Closed);
        assert_eq!(send(Outcome::Success), BreakerState::Closed);
        assert_eq!(
            send(Outcome::Success),
            BreakerState::Closed,
            "4 requests, 50 % failed, but the last one succeeded"
        );
        assert_eq!(send(Outcome::Failure), BreakerState::Open);
    }

    #[test]
    fn error_rate_forgets_failures_outside_the_window() {
        let breaker = CircuitBreaker::default();
        let start = Instant::now();
        for _ in 0..2 {
            for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
                assert!(attempt(&breaker, outcome, start));
            }
        }
        // 4 of 6 failed, but the window slides past them before minRequests is reached.
        let later = start + Duration::from_secs(10);
        for _ in 0..4 {
            assert!(attempt(&breaker, Outcome::Success, later));
        }
        assert_eq!(breaker.stats(later).window.requests, 4);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_one_probe_and_closes_after_recovery() {
        let breaker = CircuitBreaker::default();
        for _ in 0..3 {
            assert!(attempt(&breaker, Outcome::Failure, Instant::now()));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(breaker.try_acquire(&config(), Instant::now()).is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = breaker.try_acquire(&config(), Instant::now());
        assert!(probe.as_ref().is_some_and(Permit::is_probe));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(
            breaker.try_acquire(&config(), Instant::now()).is_none(),
            "one probe at a time"
        );
        if let Some(probe) = probe {
            probe.record(Outcome::Success, Instant::now());
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(attempt(&breaker, Outcome::Success, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_period() {
        let breaker = CircuitBreaker::default();
        for _ in 0..3 {
            assert!(attempt(&breaker, Outcome::Failure, Instant::now()));
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(attempt(&breaker, Outcome::Failure, Instant::now()));
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(!attempt(&breaker, Outcome::Success, Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(attempt(&breaker, Outcome::Success, Instant::now()));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_or_neutral_probe_lets_the_next_request_probe() {
        let breaker = CircuitBreaker::default();
        for _ in 0..3 {
            assert!(attempt(&breaker, Outcome::Failure, Instant::now()));
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire(&config(), Instant::now());
        assert!(probe.is_some());
        drop(probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(attempt(&breaker, Outcome::Neutral, Instant::now()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(attempt(&breaker, Outcome::Success, Instant::now()));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn results_from_before_a_trip_do_not_count_after_it() {
        let breaker = CircuitBreaker::default();
        let now = Instant::now();
        let slow = breaker.try_acquire(&config(), now);
        let late_success = breaker.try_acquire(&config(), now);
        for _ in 0..3 {
            assert!(attempt(&breaker, Outcome::Failure, now));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        // A success from a request sent before the trip does not close it...
        if let Some(permit) = late_success {
            permit.record(Outcome::Success, now);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        // ...and after recovery, a failure from that time does not count against the new period.
        let reopen = now + Duration::from_secs(5);
        assert!(attempt(&breaker, Outcome::Success, reopen));
        if let Some(permit) = slow {
            permit.record(Outcome::Failure, reopen);
        }
        assert_eq!(breaker.stats(reopen).consecutive_failures, 0);
    }

    #[test]
    fn late_stream_failures_count_while_closed() {
        let breaker = CircuitBreaker::default();
        let now = Instant::now();
        // Each stream succeeds at its first event, then breaks: the run of failures goes on.
        for expected in 1..=2 {
            assert!(attempt(&breaker, Outcome::Success, now));
            breaker.record_late_failure(&config(), now);
            assert_eq!(breaker.stats(now).consecutive_failures, expected);
            assert_eq!(
                breaker.stats(now).window,
                WindowCounts {
                    requests: expected.into(),
                    marked: expected.into()
                },
                "one outcome per attempt"
            );
        }
        assert!(attempt(&breaker, Outcome::Success, now));
        breaker.record_late_failure(&config(), now);
        assert_eq!(breaker.state(), BreakerState::Open);

        // A stream that completes in between ends the run.
        let breaker = CircuitBreaker::default();
        assert!(attempt(&breaker, Outcome::Success, now));
        breaker.record_late_failure(&config(), now);
        assert!(attempt(&breaker, Outcome::Success, now));
        assert!(attempt(&breaker, Outcome::Success, now));
        breaker.record_late_failure(&config(), now);
        assert_eq!(breaker.stats(now).consecutive_failures, 1);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn concurrent_callers_get_exactly_one_probe() {
        let breaker = CircuitBreaker::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(attempt(&breaker, Outcome::Failure, start));
        }
        let due = start + Duration::from_secs(5);
        let admitted = AtomicUsize::new(0);
        let permits = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        if let Some(permit) = breaker.try_acquire(&config(), due) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            // Held, as an in-flight probe would be.
                            permits.lock().unwrap().push(permit);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 1);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn outcome_of_each_error() {
        let upstream = |kind| GatewayError::Upstream(UpstreamError::new(kind, 500, ""));
        let cases = [
            (
                GatewayError::Transport(TransportError::Connect("refused".into())),
                Outcome::Failure,
            ),
            (
                GatewayError::Transport(TransportError::IdleTimeout(Duration::from_secs(1))),
                Outcome::Failure,
            ),
            (
                GatewayError::TotalTimeout(Duration::from_secs(1)),
                Outcome::Failure,
            ),
            (upstream(UpstreamErrorKind::Server), Outcome::Failure),
            (upstream(UpstreamErrorKind::RateLimited), Outcome::Failure),
            (upstream(UpstreamErrorKind::QuotaExceeded), Outcome::Failure),
            (upstream(UpstreamErrorKind::Auth), Outcome::Failure),
            (upstream(UpstreamErrorKind::Protocol), Outcome::Failure),
            (
                upstream(UpstreamErrorKind::ContextLengthExceeded),
                Outcome::Neutral,
            ),
            (upstream(UpstreamErrorKind::ContentFilter), Outcome::Neutral),
            (upstream(UpstreamErrorKind::BadRequest), Outcome::Neutral),
            (
                GatewayError::Translate(TranslateError::InvalidTarget("x".into())),
                Outcome::Neutral,
            ),
            (
                GatewayError::InvalidRequest(RequestError::new("bad")),
                Outcome::Neutral,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(Outcome::of_error(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn state_numbers_for_the_gauge() {
        assert_eq!(
            [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen
            ]
            .map(BreakerState::as_number),
            [0, 2, 1]
        );
    }
}
