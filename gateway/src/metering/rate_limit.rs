//! Requests- and tokens-per-minute limits of one key or one route, over a sliding minute, with token
//! reservations that are settled to the real count.
//!
//! A limiter keeps a ring of one-second slots. A request is admitted when, over the last minute, the
//! requests plus one stay within `requestsPerMinute`, and the settled tokens, plus the tokens still
//! reserved by requests in flight, plus this request's reservation (prompt estimate + output bound) stay
//! within `tokensPerMinute`. When the request ends its reservation is replaced by the real count, charged
//! to the second it was admitted in. Hence the tokens admitted in any 60 s stay within the limit plus the
//! amount by which reservations under-estimated; a single request larger than the whole limit is admitted
//! only into an empty window (so it is never refused for ever), which is the "plus one reservation".
//!
//! Limits are enforced by each gateway replica on its own traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use sluice_crds::config::RateLimitConfig;
use tokio::time::Instant;

/// Width of one slot.
const SLOT: Duration = Duration::from_secs(1);
/// The ring covers the slots `now − 60 s ..= now`: a superset of the last minute, so that two bursts in
/// one 60 s span are never counted in different windows.
const SLOTS: usize = 61;
/// Wait suggested when only reservations of requests in flight stand in the way (they settle soon).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
}

/// One limit as the `x-ratelimit-*` headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window is back to its initial state (everything counted now has left it).
    pub reset: Duration,
}

/// The state of the limits that apply to a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStatus {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
}

impl LimitStatus {
    /// The tighter of two statuses, dimension by dimension (a key limit and a route limit).
    pub fn tighter(self, other: LimitStatus) -> LimitStatus {
        fn pick(a: Option<Quota>, b: Option<Quota>) -> Option<Quota> {
            match (a, b) {
                (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
                (a, b) => a.or(b),
            }
        }
        LimitStatus {
            requests: pick(self.requests, other.requests),
            tokens: pick(self.tokens, other.tokens),
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub dimension: Dimension,
    /// When the request would fit (at the current load).
    pub retry_after: Duration,
    pub status: LimitStatus,
}

/// An admission, to settle or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    slot: u64,
    reserved: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Seconds since the limiter's origin that this slot counts.
    index: u64,
    requests: u64,
    tokens: u64,
}

/// One key's or one route's limits.
#[derive(Debug)]
pub struct Limiter {
    inner: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// Slots are counted from the first event, so no clock is read at construction.
    origin: Option<Instant>,
    slots: [Slot; SLOTS],
    /// Tokens reserved by admitted requests that have not settled.
    reserved: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Ring {
                origin: None,
                slots: [Slot::default(); SLOTS],
                reserved: 0,
            }),
        }
    }
}

impl Ring {
    fn index(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        (now.saturating_duration_since(origin).as_nanos() / SLOT.as_nanos()) as u64
    }

    /// Live slots (within the window at `current`), oldest first.
    fn live(&self, current: u64) -> Vec<Slot> {
        let mut live: Vec<Slot> = self
            .slots
            .iter()
            .filter(|slot| slot.index <= current && slot.index + (SLOTS as u64) > current)
            .filter(|slot| slot.requests > 0 || slot.tokens > 0)
            .copied()
            .collect();
        live.sort_by_key(|slot| slot.index);
        live
    }

    /// When `slot` leaves the window.
    fn leaves_in(&self, slot: &Slot, now: Instant) -> Duration {
        let origin = self.origin.unwrap_or(now);
        let leaves = origin + SLOT * u32::try_from(slot.index + SLOTS as u64).unwrap_or(u32::MAX);
        leaves.saturating_duration_since(now)
    }

    /// Time until `excess` units of `amount(slot)` have left the window.
    fn wait_for(
        &self,
        live: &[Slot],
        excess: u64,
        amount: impl Fn(&Slot) -> u64,
        now: Instant,
    ) -> Option<Duration> {
        let mut freed = 0;
        for slot in live {
            freed += amount(slot);
            if freed >= excess {
                return Some(self.leaves_in(slot, now));
            }
        }
        None
    }

    fn slot_mut(&mut self, index: u64) -> &mut Slot {
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot
    }
}

impl Limiter {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request that reserves `tokens`, or says when it would fit.
    pub fn try_admit(
        &self,
        limits: &RateLimitConfig,
        tokens: u64,
        now: Instant,
    ) -> Result<(Ticket, LimitStatus), Refused> {
        let mut ring = self.lock();
        let current = ring.index(now);
        let live = ring.live(current);
        let used_requests: u64 = live.iter().map(|slot| slot.requests).sum();
        let used_tokens: u64 = live.iter().map(|slot| slot.tokens).sum();
        let reset = live
            .last()
            .map_or(Duration::ZERO, |slot| ring.leaves_in(slot, now));
        let reserved = if limits.tokens_per_minute.is_some() {
            tokens
        } else {
            0
        };
        let refusal = |dimension, retry_after: Duration, status| Refused {
            dimension,
            retry_after: retry_after.max(Duration::from_millis(1)),
            status,
        };
        let status_before = LimitStatus {
            requests: limits.requests_per_minute.map(|limit| Quota {
                limit,
                remaining: limit.saturating_sub(used_requests),
                reset,
            }),
            tokens: limits.tokens_per_minute.map(|limit| Quota {
                limit,
                remaining: limit.saturating_sub(used_tokens + ring.reserved),
                reset,
            }),
        };
        if let Some(limit) = limits.requests_per_minute
            && used_requests + 1 > limit
        {
            let wait = ring
                .wait_for(&live, used_requests + 1 - limit, |slot| slot.requests, now)
                .unwrap_or(SLOT);
            return Err(refusal(Dimension::Requests, wait, status_before));
        }
        if let Some(limit) = limits.tokens_per_minute {
            let load = used_tokens + ring.reserved;
            if load > 0 && load + reserved > limit {
                // Settled tokens leave the window with time; reservations in flight leave when they
                // settle. An oversized request waits for an empty window.
                let excess = if reserved > limit {
                    used_tokens
                } else {
                    load + reserved - limit
                };
                let wait = if excess == 0 || excess > used_tokens {
                    IN_FLIGHT_WAIT
                } else {
                    ring.wait_for(&live, excess, |slot| slot.tokens, now)
                        .unwrap_or(IN_FLIGHT_WAIT)
                };
                return Err(refusal(Dimension::Tokens, wait, status_before));
            }
        }
        ring.reserved += reserved;
        ring.slot_mut(current).requests += 1;
        let reset = ring.leaves_in(
            &Slot {
                index: current,
                ..Slot::default()
            },
            now,
        );
        let status = LimitStatus {
            requests: status_before.requests.map(|quota| Quota {
                remaining: quota.remaining.saturating_sub(1),
                reset,
                ..quota
            }),
            tokens: status_before.tokens.map(|quota| Quota {
                remaining: quota.remaining.saturating_sub(reserved),
                reset,
                ..quota
            }),
        };
        Ok((
            Ticket {
                slot: current,
                reserved,
            },
            status,
        ))
    }

    /// Replaces a ticket's reservation by the `tokens` the request really used.
    pub fn settle(&self, ticket: Ticket, tokens: u64, now: Instant) {
        let mut ring = self.lock();
        ring.reserved = ring.reserved.saturating_sub(ticket.reserved);
        let current = ring.index(now);
        // Charged to the second of admission, unless that second has left the window already.
        if ticket.slot + (SLOTS as u64) > current {
            let slot = &mut ring.slots[(ticket.slot % SLOTS as u64) as usize];
            if slot.index == ticket.slot {
                slot.tokens += tokens;
            }
        }
    }

    /// Undoes an admission (another limit refused the same request).
    pub fn release(&self, ticket: Ticket) {
        let mut ring = self.lock();
        ring.reserved = ring.reserved.saturating_sub(ticket.reserved);
        let slot = &mut ring.slots[(ticket.slot % SLOTS as u64) as usize];
        if slot.index == ticket.slot {
            slot.requests = slot.requests.saturating_sub(1);
        }
    }
}

/// The limiters of every key and route that has a limit, created on first use.
#[derive(Debug, Default)]
pub struct Limiters {
    keys: RwLock<HashMap<Arc<str>, Arc<Limiter>>>,
    routes: RwLock<HashMap<Arc<str>, Arc<Limiter>>>,
}

impl Limiters {
    pub fn key(&self, id: &Arc<str>) -> Arc<Limiter> {
        Self::get(&self.keys, id)
    }

    pub fn route(&self, id: &Arc<str>) -> Arc<Limiter> {
        Self::get(&self.routes, id)
    }

    fn get(map: &RwLock<HashMap<Arc<str>, Arc<Limiter>>>, id: &Arc<str>) -> Arc<Limiter> {
        if let Some(limiter) = map.read().unwrap_or_else(PoisonError::into_inner).get(id) {
            return limiter.clone();
        }
        map.write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone()
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`.
pub fn format_reset(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let minutes = millis / 60_000;
    let rest = (millis % 60_000) as f64 / 1_000.0;
    let seconds = format!("{rest:.3}");
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    #[test]
    fn requests_per_minute_slide_with_the_clock() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let rpm = limits(Some(3), None);
        for i in 0..3 {
            let (_, status) = limiter
                .try_admit(&rpm, 0, t0 + Duration::from_secs(i * 10))
                .unwrap();
            assert_eq!(status.requests.unwrap().remaining, 2 - i);
        }
        let refused = limiter
            .try_admit(&rpm, 0, t0 + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(refused.dimension, Dimension::Requests);
        // The first request (second 0) leaves the window at 61 s.
        assert_eq!(refused.retry_after, Duration::from_secs(31));
        assert!(
            limiter
                .try_admit(&rpm, 0, t0 + Duration::from_secs(60))
                .is_err()
        );
        assert!(
            limiter
                .try_admit(&rpm, 0, t0 + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn token_reservations_hold_capacity_until_settled() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let tpm = limits(None, Some(1_000));
        let (first, status) = limiter.try_admit(&tpm, 600, t0).unwrap();
        assert_eq!(status.tokens.unwrap().remaining, 400);
        // 600 reserved: another 600 does not fit while the first is in flight.
        let refused = limiter.try_admit(&tpm, 600, t0).unwrap_err();
        assert_eq!(refused.dimension, Dimension::Tokens);
        assert_eq!(refused.retry_after, IN_FLIGHT_WAIT);
        // The first used only 100: 900 are left.
        limiter.settle(first, 100, t0 + Duration::from_secs(2));
        let (_, status) = limiter
            .try_admit(&tpm, 600, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(status.tokens.unwrap().remaining, 300);
        let refused = limiter
            .try_admit(&tpm, 400, t0 + Duration::from_secs(3))
            .unwrap_err();
        // 100 settled tokens of second 0 leave at 61 s, which makes room for 400 after the 600 in flight.
        assert_eq!(refused.retry_after, Duration::from_secs(58));
    }

    #[test]
    fn an_oversized_request_waits_for_an_empty_window() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let tpm = limits(None, Some(100));
        let (ticket, _) = limiter.try_admit(&tpm, 500, t0).unwrap();
        limiter.settle(ticket, 450, t0 + Duration::from_secs(1));
        let refused = limiter
            .try_admit(&tpm, 500, t0 + Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(56));
        assert!(
            limiter
                .try_admit(&tpm, 10, t0 + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn a_released_admission_leaves_no_trace() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let both = limits(Some(1), Some(100));
        let (ticket, _) = limiter.try_admit(&both, 80, t0).unwrap();
        limiter.release(ticket);
        assert!(limiter.try_admit(&both, 80, t0).is_ok());
    }

    #[test]
    fn the_tighter_status_wins_per_dimension() {
        let quota = |remaining| Quota {
            limit: 10,
            remaining,
            reset: Duration::ZERO,
        };
        let key = LimitStatus {
            requests: Some(quota(5)),
            tokens: None,
        };
        let route = LimitStatus {
            requests: Some(quota(2)),
            tokens: Some(quota(7)),
        };
        let merged = key.tighter(route);
        assert_eq!(merged.requests.unwrap().remaining, 2);
        assert_eq!(merged.tokens.unwrap().remaining, 7);
    }

    #[test]
    fn resets_are_written_like_openai() {
        assert_eq!(format_reset(Duration::from_millis(20)), "20ms");
        assert_eq!(format_reset(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_millis(61_250)), "1m1.25s");
    }
}
