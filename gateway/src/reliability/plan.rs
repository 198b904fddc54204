//! Which backend a request's next attempt goes to, and not before when: untried backends first (fail
//! over at once), a failed one again only when its backoff or `Retry-After` allows, and a stop when
//! attempts, candidates or time run out.

use std::time::Duration;

use sluice_crds::config::RetryConfig;
use tokio::time::Instant;

use super::retry_after::{Recovery, SameBackend, same_backend};
use crate::error::GatewayError;
use crate::providers::UpstreamErrorKind;
use crate::upstream::policy::should_retry;

/// What the planner needs to know about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Whether the route's policy lets the request go on after it.
    pub retryable: bool,
    pub recovery: Recovery,
    /// The provider's retry hint.
    pub hint: Option<Duration>,
    /// The prompt did not fit: only a backend with a larger context window may take it.
    pub context_exceeded: bool,
}

impl Failure {
    /// Classifies a failed attempt under the route's retry policy.
    pub fn classify(policy: &RetryConfig, error: &GatewayError) -> Self {
        let retryable =
            should_retry(policy, error) && !matches!(error, GatewayError::TotalTimeout(_));
        let (recovery, hint, context_exceeded) = match error {
            GatewayError::Transport(_) => (Recovery::Transient, None, false),
            GatewayError::Upstream(upstream) => {
                let recovery = match upstream.kind {
                    UpstreamErrorKind::RateLimited => Recovery::RateLimited,
                    UpstreamErrorKind::QuotaExceeded
                    | UpstreamErrorKind::Auth
                    | UpstreamErrorKind::NotFound
                    | UpstreamErrorKind::ContextLengthExceeded => Recovery::Permanent,
                    // A 400 or filter retried only because its provider code is listed: treat like 5xx.
                    UpstreamErrorKind::Overloaded
                    | UpstreamErrorKind::Timeout
                    | UpstreamErrorKind::Server
                    | UpstreamErrorKind::Protocol
                    | UpstreamErrorKind::BadRequest
                    | UpstreamErrorKind::ContentFilter => Recovery::Transient,
                };
                (
                    recovery,
                    upstream.retry_after,
                    upstream.kind == UpstreamErrorKind::ContextLengthExceeded,
                )
            }
            // A request this provider cannot express fails the same way every time.
            _ => (Recovery::Permanent, None, false),
        };
        Self {
            retryable,
            recovery,
            hint,
            context_exceeded,
        }
    }
}

/// Why a candidate is out of the running for the rest of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Its circuit breaker refused the attempt (no attempt was made).
    BreakerOpen,
    /// It failed in a way that will not change within this request (see [`SameBackend::Never`]).
    WillNotRecover,
    /// Its context window is no larger than one that already said the prompt is too long.
    ContextTooSmall,
}

/// Whether the attempt is the request's first, which decides which budget it draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// Deposits into the backend's retry budget.
    First,
    /// Withdraws from the first backend's retry budget.
    Retry,
}

/// The next step of the attempt loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send to `candidate` (an index into the candidate list) at `at` (now, or after a backoff).
    Attempt {
        candidate: usize,
        at: Instant,
        kind: AttemptKind,
    },
    /// Nothing to start, but an attempt (a hedge) is still in flight: wait for it.
    AwaitInFlight,
    /// Give up; the last failure is the answer.
    Stop(Stop),
}

/// Why the loop gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The last failure is not one the route retries.
    NotRetryable,
    /// The route's `attempts` were all made.
    AttemptsExhausted,
    /// Every candidate is excluded.
    NoCandidateLeft,
    /// The next possible attempt would start at or after the request's deadline.
    DeadlineReached,
}

/// One request's plan. Candidates are indices `0..n` in the order the routing strategy chose.
#[derive(Debug, Clone)]
pub struct AttemptPlan {
    max_attempts: u32,
    started: u32,
    stopped: Option<Stop>,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    context_window: Option<u64>,
    failures: u32,
    not_before: Option<Instant>,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Ready,
    InFlight,
    Excluded(Excluded),
}

impl AttemptPlan {
    /// A plan for at most `max_attempts` attempts over candidates with these context windows (`None`:
    /// unknown, which never excludes a backend from a context-length fallback).
    pub fn new(max_attempts: u32, context_windows: impl IntoIterator<Item = Option<u64>>) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            started: 0,
            stopped: None,
            slots: context_windows
                .into_iter()
                .map(|context_window| Slot {
                    context_window,
                    failures: 0,
                    not_before: None,
                    state: SlotState::Ready,
                })
                .collect(),
        }
    }

    /// Attempts started so far (hedges included).
    pub fn started(&self) -> u32 {
        self.started
    }

    /// Why `candidate` is out, if it is.
    pub fn excluded(&self, candidate: usize) -> Option<Excluded> {
        match self.slots.get(candidate)?.state {
            SlotState::Excluded(reason) => Some(reason),
            SlotState::Ready | SlotState::InFlight => None,
        }
    }

    /// The next step at `now`. Untried candidates come first, in order, without waiting; then the failed
    /// candidate that may be retried soonest (earlier in the order on a tie). While an attempt is still
    /// in flight, running out of attempts, candidates or time means waiting for it, not giving up.
    pub fn next(&self, now: Instant, deadline: Instant) -> Next {
        if let Some(stop) = self.stopped {
            return Next::Stop(stop);
        }
        match self.choose(now, deadline) {
            Next::Stop(_)
                if self
                    .slots
                    .iter()
                    .any(|slot| slot.state == SlotState::InFlight) =>
            {
                Next::AwaitInFlight
            }
            next => next,
        }
    }

    fn choose(&self, now: Instant, deadline: Instant) -> Next {
        if self.started >= self.max_attempts {
            return Next::Stop(Stop::AttemptsExhausted);
        }
        let kind = if self.started == 0 {
            AttemptKind::First
        } else {
            AttemptKind::Retry
        };
        let ready = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.state == SlotState::Ready)
        };
        let chosen = ready()
            .find(|(_, slot)| slot.failures == 0)
            .or_else(|| ready().min_by_key(|(index, slot)| (slot.not_before, *index)));
        let Some((candidate, slot)) = chosen else {
            return Next::Stop(Stop::NoCandidateLeft);
        };
        let at = slot
            .not_before
            .map_or(now, |not_before| not_before.max(now));
        if at >= deadline {
            return Next::Stop(Stop::DeadlineReached);
        }
        Next::Attempt {
            candidate,
            at,
            kind,
        }
    }

    /// A candidate for a hedge: the first untried one. The caller checks the hedge budget and the
    /// breaker, then calls [`AttemptPlan::start`].
    pub fn hedge_candidate(&self) -> Option<usize> {
        if self.stopped.is_some() || self.started >= self.max_attempts {
            return None;
        }
        self.slots
            .iter()
            .position(|slot| slot.state == SlotState::Ready && slot.failures == 0)
    }

    /// Rules `candidate` out without an attempt (its breaker refused).
    pub fn exclude(&mut self, candidate: usize, reason: Excluded) {
        if let Some(slot) = self.slots.get_mut(candidate) {
            slot.state = SlotState::Excluded(reason);
        }
    }

    /// Records that an attempt to `candidate` was sent.
    pub fn start(&mut self, candidate: usize) {
        if let Some(slot) = self.slots.get_mut(candidate) {
            slot.state = SlotState::InFlight;
            self.started += 1;
        }
    }

    /// Records a failed attempt to `candidate` at `now`. `unit` is a uniform sample in `[0, 1)` for
    /// the backoff's jitter.
    pub fn failed(
        &mut self,
        candidate: usize,
        failure: &Failure,
        policy: &RetryConfig,
        now: Instant,
        unit: f64,
    ) {
        let Some(slot) = self.slots.get_mut(candidate) else {
            return;
        };
        let earlier_failures = slot.failures;
        slot.failures += 1;
        slot.state = SlotState::Ready;
        match same_backend(
            policy,
            failure.recovery,
            earlier_failures,
            failure.hint,
            unit,
        ) {
            SameBackend::After(wait) => slot.not_before = Some(now + wait),
            SameBackend::Never => slot.state = SlotState::Excluded(Excluded::WillNotRecover),
        }
        if failure.context_exceeded
            && let Some(too_small) = slot.context_window
        {
            for other in &mut self.slots {
                if other.state == SlotState::Ready
                    && other
                        .context_window
                        .is_some_and(|window| window <= too_small)
                {
                    other.state = SlotState::Excluded(Excluded::ContextTooSmall);
                }
            }
        }
        if !failure.retryable {
            self.stopped = Some(Stop::NotRetryable);
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::v1alpha1::RetryOn;

    use super::*;
    use crate::api::RequestError;
    use crate::providers::{TranslateError, UpstreamError};
    use crate::upstream::TransportError;

    fn policy() -> RetryConfig {
        RetryConfig {
            attempts: 4,
            retry_on: vec![
                RetryOn::ConnectError,
                RetryOn::Timeout,
                RetryOn::ServerError,
                RetryOn::RateLimited,
                RetryOn::ContextLength,
            ],
            provider_error_codes: vec!["server_is_sleepy".into()],
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            retry_after_cap_ms: 10_000,
            budget_percent: 20,
        }
    }

    fn upstream(kind: UpstreamErrorKind, retry_after: Option<Duration>) -> GatewayError {
        GatewayError::Upstream(UpstreamError::new(kind, 500, "").with_retry_after(retry_after))
    }

    fn attempt(candidate: usize, at: Instant, kind: AttemptKind) -> Next {
        Next::Attempt {
            candidate,
            at,
            kind,
        }
    }

    /// Fails candidate 0 of a plan over `candidates` backends at `now`; the step after it and whether
    /// candidate 0 is now out.
    fn after_one_failure(
        error: &GatewayError,
        candidates: usize,
        now: Instant,
    ) -> (Next, Option<Excluded>) {
        let mut plan = AttemptPlan::new(4, vec![None; candidates]);
        plan.start(0);
        plan.failed(0, &Failure::classify(&policy(), error), &policy(), now, 0.5);
        (
            plan.next(now, now + Duration::from_secs(60)),
            plan.excluded(0),
        )
    }

    #[test]
    fn which_backend_next_after_each_failure() {
        use AttemptKind::Retry;
        let now = Instant::now();
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let cases: Vec<(&str, GatewayError, usize, Next, Option<Excluded>)> = vec![
            // With another backend, every retryable failure fails over at once.
            (
                "5xx fails over",
                upstream(UpstreamErrorKind::Server, None),
                2,
                attempt(1, now, Retry),
                None,
            ),
            (
                "429 without Retry-After fails over",
                upstream(UpstreamErrorKind::RateLimited, None),
                2,
                attempt(1, now, Retry),
                Some(Excluded::WillNotRecover),
            ),
            // Alone, a backend is retried after its backoff or hint...
            (
                "5xx alone waits for the backoff",
                upstream(UpstreamErrorKind::Server, None),
                1,
                attempt(0, now + ms(50), Retry),
                None,
            ),
            (
                "connect error alone waits for the backoff",
                GatewayError::Transport(TransportError::Connect("refused".into())),
                1,
                attempt(0, now + ms(50), Retry),
                None,
            ),
            (
                "503 with Retry-After waits for it",
                upstream(UpstreamErrorKind::Overloaded, Some(secs(2))),
                1,
                attempt(0, now + secs(2), Retry),
                None,
            ),
            (
                "429 with Retry-After waits for it",
                upstream(UpstreamErrorKind::RateLimited, Some(secs(3))),
                1,
                attempt(0, now + secs(3), Retry),
                None,
            ),
            // ...unless the wait is above the cap or there is no hint for a 429: never loop on it.
            (
                "429 with Retry-After above the cap",
                upstream(UpstreamErrorKind::RateLimited, Some(secs(30))),
                1,
                Next::Stop(Stop::NoCandidateLeft),
                Some(Excluded::WillNotRecover),
            ),
            (
                "429 without Retry-After alone",
                upstream(UpstreamErrorKind::RateLimited, None),
                1,
                Next::Stop(Stop::NoCandidateLeft),
                Some(Excluded::WillNotRecover),
            ),
            (
                "exhausted quota is not retried on the same backend",
                upstream(UpstreamErrorKind::QuotaExceeded, Some(secs(1))),
                1,
                Next::Stop(Stop::NoCandidateLeft),
                Some(Excluded::WillNotRecover),
            ),
            (
                "rejected credentials fail over",
                upstream(UpstreamErrorKind::Auth, None),
                2,
                attempt(1, now, Retry),
                Some(Excluded::WillNotRecover),
            ),
            (
                "a request the provider cannot express fails over",
                GatewayError::Translate(TranslateError::InvalidTarget("x".into())),
                2,
                attempt(1, now, Retry),
                Some(Excluded::WillNotRecover),
            ),
            (
                "an invalid request stops",
                upstream(UpstreamErrorKind::BadRequest, None),
                2,
                Next::Stop(Stop::NotRetryable),
                None,
            ),
            (
                "a client error stops",
                GatewayError::InvalidRequest(RequestError::new("bad")),
                2,
                Next::Stop(Stop::NotRetryable),
                Some(Excluded::WillNotRecover),
            ),
            (
                "the total timeout stops",
                GatewayError::TotalTimeout(secs(1)),
                2,
                Next::Stop(Stop::NotRetryable),
                Some(Excluded::WillNotRecover),
            ),
        ];
        for (name, error, candidates, expected_next, expected_excluded) in cases {
            let (next, excluded) = after_one_failure(&error, candidates, now);
            assert_eq!(next, expected_next, "{name}");
            assert_eq!(excluded, expected_excluded, "{name}");
        }
    }

    #[test]
    fn a_listed_provider_code_makes_a_400_retryable() {
        let error = GatewayError::Upstream(
            UpstreamError::new(UpstreamErrorKind::BadRequest, 400, "")
                .with_code(Some("server_is_sleepy".into())),
        );
        let failure = Failure::classify(&policy(), &error);
        assert!(failure.retryable);
        assert_eq!(failure.recovery, Recovery::Transient);
    }

    #[test]
    fn round_trip_over_two_failing_backends_respects_backoff_and_attempts() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let policy = policy();
        let server = Failure::classify(&policy, &upstream(UpstreamErrorKind::Server, None));
        let mut plan = AttemptPlan::new(policy.attempts, [None, None]);
        let mut now = start;
        let mut trail = Vec::new();
        while let Next::Attempt {
            candidate,
            at,
            kind,
        } = plan.next(now, deadline)
        {
            now = at;
            trail.push((candidate, now - start, kind));
            plan.start(candidate);
            plan.failed(candidate, &server, &policy, now, 0.5);
        }
        let ms = Duration::from_millis;
        assert_eq!(
            trail,
            vec![
                (0, ms(0), AttemptKind::First),
                (1, ms(0), AttemptKind::Retry),
                // Candidate 0 became ready at 50 ms (first backoff: half of 100 ms).
                (0, ms(50), AttemptKind::Retry),
                // Candidate 1 has been ready since 50 ms as well.
                (1, ms(50), AttemptKind::Retry),
            ]
        );
        assert_eq!(
            plan.next(now, deadline),
            Next::Stop(Stop::AttemptsExhausted)
        );
    }

    #[test]
    fn a_wait_past_the_deadline_stops() {
        let now = Instant::now();
        let mut plan = AttemptPlan::new(3, [None]);
        plan.start(0);
        let failure = Failure::classify(
            &policy(),
            &upstream(UpstreamErrorKind::Overloaded, Some(Duration::from_secs(5))),
        );
        plan.failed(0, &failure, &policy(), now, 0.5);
        assert_eq!(
            plan.next(now, now + Duration::from_secs(5)),
            Next::Stop(Stop::DeadlineReached)
        );
        assert!(matches!(
            plan.next(now, now + Duration::from_secs(6)),
            Next::Attempt { candidate: 0, .. }
        ));
    }

    #[test]
    fn context_length_moves_to_a_larger_window_only() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(60);
        // 8k (fails), 4k, unknown, 128k.
        let mut plan = AttemptPlan::new(4, [Some(8_000), Some(4_000), None, Some(128_000)]);
        plan.start(0);
        let failure = Failure::classify(
            &policy(),
            &upstream(UpstreamErrorKind::ContextLengthExceeded, None),
        );
        plan.failed(0, &failure, &policy(), now, 0.5);
        assert_eq!(plan.excluded(1), Some(Excluded::ContextTooSmall));
        assert_eq!(
            plan.next(now, deadline),
            attempt(2, now, AttemptKind::Retry),
            "an unknown window may be larger"
        );
        plan.start(2);
        plan.failed(2, &failure, &policy(), now, 0.5);
        assert_eq!(
            plan.next(now, deadline),
            attempt(3, now, AttemptKind::Retry)
        );
    }

    #[test]
    fn breaker_refusals_cost_no_attempt() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(60);
        let mut plan = AttemptPlan::new(2, [None, None, None]);
        assert_eq!(
            plan.next(now, deadline),
            attempt(0, now, AttemptKind::First)
        );
        plan.exclude(0, Excluded::BreakerOpen);
        assert_eq!(
            plan.next(now, deadline),
            attempt(1, now, AttemptKind::First),
            "still the first attempt"
        );
        plan.exclude(1, Excluded::BreakerOpen);
        plan.exclude(2, Excluded::BreakerOpen);
        assert_eq!(plan.next(now, deadline), Next::Stop(Stop::NoCandidateLeft));
        assert_eq!(plan.started(), 0);
    }

    #[test]
    fn hedging_takes_the_next_untried_candidate_and_counts_as_an_attempt() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(60);
        let server = Failure::classify(&policy(), &upstream(UpstreamErrorKind::Server, None));
        let mut plan = AttemptPlan::new(2, [None, None, None]);
        plan.start(0);
        assert_eq!(plan.hedge_candidate(), Some(1));
        plan.start(1);
        assert_eq!(plan.hedge_candidate(), None, "attempts used up");
        // The primary fails while the hedge is out: wait for the hedge, which then decides.
        plan.failed(0, &server, &policy(), now, 0.5);
        assert_eq!(plan.next(now, deadline), Next::AwaitInFlight);
        plan.failed(1, &server, &policy(), now, 0.5);
        assert_eq!(
            plan.next(now, deadline),
            Next::Stop(Stop::AttemptsExhausted)
        );
        let mut roomy = AttemptPlan::new(3, [None, None]);
        roomy.start(0);
        roomy.start(1);
        roomy.exclude(0, Excluded::WillNotRecover);
        assert_eq!(roomy.next(now, deadline), Next::AwaitInFlight);
    }
}
