//! Reliability decisions for the attempt loop: breaker, retry budget, retry hints, hedging, attempt order.
//!
//! Everything here is pure or holds only in-memory counters: no I/O, no sleeping, no clock reads. Time is
//! passed in as a [`tokio::time::Instant`] (`now`), so tests run on explicit instants or a paused tokio
//! clock. The wall clock (`SystemTime`) is needed only to turn an HTTP-date `Retry-After` into a wait.
//!
//! # State
//!
//! [`ReliabilityRegistry`] hands out [`BackendReliability`] (breaker, retry budget, latency histogram)
//! per (route id, backend name) and [`RouteReliability`] (hedge budget) per route. Resolve them when a
//! configuration is built and prune with [`ReliabilityRegistry::retain`] after it is swapped in; an
//! unchanged backend keeps its state across reloads. Configuration (`RetryConfig`, `BreakerConfig`,
//! `HedgeConfig`) is passed on each call, so new thresholds apply at once without losing state.
//!
//! # The attempt loop
//!
//! Before the loop, optionally move outliers behind their peers in the routing order: [`outliers`] over
//! each backend's [`BreakerStats::window`], then [`demote`]. Then one [`AttemptPlan`] per request, over
//! the candidates in that order, and repeatedly:
//!
//! 1. **Plan** — [`AttemptPlan::next`]`(now, deadline)`: `Attempt { candidate, at, kind }`,
//!    `AwaitInFlight` (a hedge is still out) or `Stop(reason)` (answer with the last failure).
//! 2. **Breaker permit** — [`CircuitBreaker::try_acquire`] on that backend (skip when the route has no
//!    breaker). `None`: [`AttemptPlan::exclude`] it as [`Excluded::BreakerOpen`] and go back to 1: a
//!    refused backend costs neither an attempt nor budget. When nothing was ever started because every
//!    breaker refused, fail fast with 503 and a `Retry-After` of the shortest
//!    [`CircuitBreaker::open_for`].
//! 3. **Retry budget** — `kind == First`: [`RetryBudget::deposit`] on this backend (it is "the first
//!    backend" of the request from now on). `kind == Retry`: [`RetryBudget::try_withdraw`] on the
//!    first backend's budget with the route's `budgetPercent`; `false` stops the loop (the retry would
//!    multiply load during an outage).
//! 4. **Backoff / `Retry-After`** — sleep until `at` (the plan already honoured hints up to
//!    `retryAfterCap`, failed over on a 429 without a hint, and never returns an `at` past the deadline).
//! 5. **Send** — [`AttemptPlan::start`], then the attempt under the deadline.
//! 6. **Hedge timer** — first attempt only: [`hedge_at`] gives the instant to hedge. If the attempt is
//!    still pending then, take [`AttemptPlan::hedge_candidate`], its breaker permit and
//!    [`HedgeBudget::try_withdraw`] (route budget, `maxPercent`), then `start` it too and race both;
//!    the first success wins and the loser is dropped (its permit counts as neutral). Every request on
//!    a hedged route calls [`HedgeBudget::deposit`] once.
//! 7. **Record** — success: `permit.record(Outcome::Success, now)` and
//!    [`LatencyHistogram::observe`] of the attempt's duration. Failure:
//!    `permit.record(Outcome::of_error(&error), now)` and
//!    [`AttemptPlan::failed`]`(candidate, &Failure::classify(policy, &error), policy, now, jitter)`.
//!    A stream that breaks after its first event was already recorded as a success: report it with
//!    [`CircuitBreaker::record_late_failure`].
//!
//! Load bound, per backend that takes first attempts and per 10 s:
//! `attempts ≤ (1 + budgetPercent) × requests + DEFAULT_MIN_RETRIES`, plus hedges
//! `≤ maxPercent × requests` per route.

mod breaker;
mod hedge;
mod latency;
mod outlier;
mod plan;
mod registry;
mod retry_after;
mod retry_budget;
mod window;

pub use breaker::{BreakerState, BreakerStats, CircuitBreaker, Outcome, Permit};
pub use hedge::{HEDGE_BUDGET_WINDOW, HedgeBudget, MIN_P95_DELAY, hedge_at};
pub use latency::{DECAY_INTERVAL, DECAY_SAMPLES, LatencyHistogram, MIN_SAMPLES};
pub use outlier::{OUTLIER_MARGIN_PERCENT, demote, outliers};
pub use plan::{AttemptKind, AttemptPlan, Excluded, Failure, Next, Stop};
pub use registry::{BackendHealth, BackendReliability, ReliabilityRegistry, RouteReliability};
pub use retry_after::{Recovery, SameBackend, parse_retry_after, retry_hint, same_backend};
pub use retry_budget::{DEFAULT_MIN_RETRIES, RETRY_BUDGET_WINDOW, RetryBudget};
pub use window::WindowCounts;
