//! A backend's recent latency distribution: a small lock-free log-linear histogram whose old samples
//! fade out, for the hedge delay (p95) and the p50/p95 in route status.
//!
//! Buckets are exact below 16 µs and then 8 per power of two, so a reported quantile (the upper edge of
//! its bucket) overstates the true value by at most 12.5 % — on the late side, which is the safe side
//! for a hedge. Values above [`MAX_RECORDED`] land in the last bucket. Recent behaviour wins: every
//! [`DECAY_SAMPLES`] samples, and on the first sample after [`DECAY_INTERVAL`] without a decay, all
//! counts are halved (once per interval elapsed).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Sub-buckets per power of two, as a bit count (8 sub-buckets: ≤ 12.5 % relative error).
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// Below this many microseconds each value has its own bucket.
const LINEAR_LIMIT: u64 = SUB_BUCKETS * 2;
/// Largest recorded value in microseconds (~71 minutes); anything longer is counted here.
const MAX_RECORDED: u64 = u32::MAX as u64;
/// `LINEAR_LIMIT` exact buckets, then 8 for each power of two from 2⁴ to 2³¹.
const BUCKET_COUNT: usize = (LINEAR_LIMIT
    + (63 - MAX_RECORDED.leading_zeros() as u64 - SUB_BITS as u64) * SUB_BUCKETS)
    as usize;

/// Samples between two halvings: the distribution follows the last one to two thousand requests.
pub const DECAY_SAMPLES: u32 = 1_024;
/// Longest time between two halvings, so a quiet backend's distribution reflects this minute, not
/// last hour's incident.
pub const DECAY_INTERVAL: Duration = Duration::from_secs(60);
/// Samples needed before quantiles are reported: fewer say little about a tail.
pub const MIN_SAMPLES: u64 = 20;

/// The histogram. Observing is a few relaxed atomic additions; a quantile reads every bucket.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU32; BUCKET_COUNT],
    since_decay: AtomicU32,
    /// Time of the last halving, in nanoseconds after `origin`.
    decayed_at: AtomicU64,
    origin: OnceLock<Instant>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            since_decay: AtomicU32::new(0),
            decayed_at: AtomicU64::new(0),
            origin: OnceLock::new(),
        }
    }
}

impl LatencyHistogram {
    /// Records one latency observed at `now`.
    pub fn observe(&self, latency: Duration, now: Instant) {
        self.decay_if_stale(now);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        if self.since_decay.fetch_add(1, Ordering::Relaxed) + 1 >= DECAY_SAMPLES
            && self
                .since_decay
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n >= DECAY_SAMPLES).then_some(0)
                })
                .is_ok()
        {
            self.halve(1);
        }
    }

    /// The `q` quantile (0 < q ≤ 1), or `None` with fewer than [`MIN_SAMPLES`] samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| u64::from(bucket.load(Ordering::Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        // The smallest value with at least q·total samples at or below it.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let index = counts.iter().position(|&count| {
            seen += count;
            seen >= rank
        })?;
        Some(Duration::from_micros(upper_edge(index)))
    }

    /// Samples currently weighing in (after decay).
    pub fn samples(&self) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| u64::from(bucket.load(Ordering::Relaxed)))
            .sum()
    }

    /// Halves once per [`DECAY_INTERVAL`] elapsed since the last halving; one caller wins the race.
    fn decay_if_stale(&self, now: Instant) {
        let origin = *self.origin.get_or_init(|| now);
        let elapsed =
            u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX);
        let last = self.decayed_at.load(Ordering::Relaxed);
        let interval = DECAY_INTERVAL.as_nanos() as u64;
        let periods = elapsed.saturating_sub(last) / interval;
        if periods > 0
            && self
                .decayed_at
                .compare_exchange(
                    last,
                    last + periods * interval,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.since_decay.store(0, Ordering::Relaxed);
            self.halve(u32::try_from(periods).unwrap_or(u32::MAX));
        }
    }

    fn halve(&self, times: u32) {
        for bucket in &self.buckets {
            // A sample added concurrently is either halved with the rest or lands after; none is lost.
            let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.checked_shr(times).unwrap_or(0))
            });
        }
    }
}

/// Bucket of a value in microseconds.
fn bucket_of(micros: u64) -> usize {
    let value = micros.min(MAX_RECORDED);
    if value < LINEAR_LIMIT {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros() as u64;
    let mantissa = value >> (exponent - u64::from(SUB_BITS));
    (LINEAR_LIMIT + (exponent - u64::from(SUB_BITS) - 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS))
        as usize
}

/// Largest value in microseconds that falls in bucket `index`.
fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return index;
    }
    let octave = (index - LINEAR_LIMIT) / SUB_BUCKETS;
    let mantissa = SUB_BUCKETS + (index - LINEAR_LIMIT) % SUB_BUCKETS;
    let shift = octave + 1;
    ((mantissa + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_without_gaps() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(MAX_RECORDED), BUCKET_COUNT - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKET_COUNT - 1);
        for index in 0..BUCKET_COUNT - 1 {
            let edge = upper_edge(index);
            assert_eq!(bucket_of(edge), index, "upper edge of {index}");
            assert_eq!(bucket_of(edge + 1), index + 1, "just above {index}");
        }
        assert_eq!(upper_edge(BUCKET_COUNT - 1), MAX_RECORDED);
    }

    #[test]
    fn relative_error_is_at_most_an_eighth() {
        for micros in [17, 100, 999, 12_345, 250_000, 3_000_000, 1 << 31] {
            let reported = upper_edge(bucket_of(micros));
            assert!(reported >= micros);
            assert!(
                (reported - micros) as f64 <= micros as f64 / 8.0,
                "{micros} reported as {reported}"
            );
        }
    }

    #[test]
    fn quantiles_need_enough_samples() {
        let histogram = LatencyHistogram::default();
        let now = Instant::now();
        for _ in 0..MIN_SAMPLES - 1 {
            histogram.observe(Duration::from_millis(10), now);
        }
        assert_eq!(histogram.quantile(0.95), None);
        histogram.observe(Duration::from_millis(10), now);
        let p95 = histogram.quantile(0.95).unwrap();
        assert!(p95 >= Duration::from_millis(10) && p95 <= Duration::from_micros(11_250));
    }

    #[test]
    fn p95_follows_the_tail() {
        let histogram = LatencyHistogram::default();
        let now = Instant::now();
        // 94 fast, 6 slow: the 95th percentile is slow.
        for i in 0..100 {
            let ms = if i < 94 { 20 } else { 400 };
            histogram.observe(Duration::from_millis(ms), now);
        }
        let near = |value: Option<Duration>, ms: u64| {
            value.is_some_and(|v| {
                v >= Duration::from_millis(ms) && v <= Duration::from_millis(ms + ms / 8)
            })
        };
        assert!(near(histogram.quantile(0.95), 400));
        assert!(near(histogram.quantile(0.5), 20));
        assert!(near(histogram.quantile(0.94), 20));
    }

    #[test]
    fn old_samples_fade_by_count() {
        let histogram = LatencyHistogram::default();
        let now = Instant::now();
        for _ in 0..DECAY_SAMPLES {
            histogram.observe(Duration::from_millis(500), now);
        }
        assert_eq!(histogram.samples(), u64::from(DECAY_SAMPLES / 2));
        for _ in 0..4 * DECAY_SAMPLES {
            histogram.observe(Duration::from_millis(5), now);
        }
        let p95 = histogram.quantile(0.95).unwrap();
        assert!(p95 < Duration::from_millis(6), "{p95:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn old_samples_fade_by_time() {
        let histogram = LatencyHistogram::default();
        for _ in 0..100 {
            histogram.observe(Duration::from_millis(500), Instant::now());
        }
        tokio::time::advance(DECAY_INTERVAL * 3).await;
        histogram.observe(Duration::from_millis(5), Instant::now());
        // 100 halved three times is 12.
        assert_eq!(histogram.samples(), 13);
        tokio::time::advance(DECAY_INTERVAL - Duration::from_millis(1)).await;
        histogram.observe(Duration::from_millis(5), Instant::now());
        assert_eq!(histogram.samples(), 14, "no halving within the interval");
    }
}
