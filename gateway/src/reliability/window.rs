//! Two event counts over a sliding time window, kept in a ring of fixed-width buckets.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window: the window slides in steps of a tenth of its length, so an old burst leaves it
/// gradually instead of all at once.
pub(super) const BUCKETS: usize = 10;

/// Narrowest bucket, so a zero-length window cannot divide by zero.
const MIN_BUCKET_WIDTH: Duration = Duration::from_millis(1);

/// Counts summed over a window. What `marked` means is up to the owner: failures for the breaker,
/// retries for the retry budget, hedges for the hedge budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub requests: u64,
    pub marked: u64,
}

/// The ring. Not synchronised: owners keep it behind a short mutex.
#[derive(Debug, Clone)]
pub(super) struct SlidingWindow {
    /// Time slices are counted from the first event, so no clock is read at construction.
    origin: Option<Instant>,
    bucket_width: Duration,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The time slice (`elapsed / bucket_width`) whose counts this bucket holds.
    slice: u64,
    counts: WindowCounts,
}

impl SlidingWindow {
    /// An empty window of `length` (rounded to whole buckets of at least a millisecond).
    pub fn new(length: Duration) -> Self {
        Self {
            origin: None,
            bucket_width: (length / BUCKETS as u32).max(MIN_BUCKET_WIDTH),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Whether this window was built for `length` (a reload may change it).
    pub fn has_length(&self, length: Duration) -> bool {
        self.bucket_width == (length / BUCKETS as u32).max(MIN_BUCKET_WIDTH)
    }

    /// Adds events at `now`. An event older than the whole window, or than the first event (a caller
    /// that read the clock before another took the lock), is dropped.
    pub fn add(&mut self, now: Instant, requests: u64, marked: u64) {
        let origin = *self.origin.get_or_insert(now);
        if now < origin {
            return;
        }
        let slice = self.slice(origin, now);
        let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice < slice {
            *bucket = Bucket {
                slice,
                counts: WindowCounts::default(),
            };
        } else if bucket.slice > slice {
            return;
        }
        bucket.counts.requests = bucket.counts.requests.saturating_add(requests);
        bucket.counts.marked = bucket.counts.marked.saturating_add(marked);
    }

    /// Counts of the last [`BUCKETS`] slices up to and including `now`'s.
    pub fn sum(&self, now: Instant) -> WindowCounts {
        let Some(origin) = self.origin else {
            return WindowCounts::default();
        };
        let slice = self.slice(origin, now);
        self.buckets
            .iter()
            .filter(|bucket| bucket.slice <= slice && slice - bucket.slice < BUCKETS as u64)
            .fold(WindowCounts::default(), |sum, bucket| WindowCounts {
                requests: sum.requests.saturating_add(bucket.counts.requests),
                marked: sum.marked.saturating_add(bucket.counts.marked),
            })
    }

    /// Forgets every event.
    pub fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }

    fn slice(&self, origin: Instant, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(elapsed / self.bucket_width.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, marked: u64) -> WindowCounts {
        WindowCounts { requests, marked }
    }

    #[test]
    fn events_slide_out_bucket_by_bucket() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut window = SlidingWindow::new(Duration::from_secs(10));
        window.add(at(0), 5, 1);
        window.add(at(4_500), 3, 3);
        assert_eq!(window.sum(at(4_500)), counts(8, 4));
        assert_eq!(window.sum(at(9_999)), counts(8, 4));
        assert_eq!(window.sum(at(10_000)), counts(3, 3), "first second left");
        assert_eq!(window.sum(at(13_999)), counts(3, 3));
        assert_eq!(
            window.sum(at(14_000)),
            counts(0, 0),
            "4.5 s is in the 4–5 s bucket"
        );
    }

    #[test]
    fn a_reused_bucket_starts_from_zero() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(Duration::from_secs(10));
        window.add(start, 7, 7);
        window.add(start + Duration::from_secs(10), 1, 0);
        assert_eq!(window.sum(start + Duration::from_secs(10)), counts(1, 0));
    }

    #[test]
    fn events_older_than_the_window_are_dropped() {
        let start = Instant::now();
        let mut window = SlidingWindow::new(Duration::from_secs(10));
        window.add(start, 1, 0);
        window.add(start + Duration::from_secs(20), 1, 0);
        window.add(start + Duration::from_secs(5), 9, 9);
        assert_eq!(window.sum(start + Duration::from_secs(20)), counts(1, 0));
        let mut late_start = SlidingWindow::new(Duration::from_secs(10));
        late_start.add(start + Duration::from_secs(1), 1, 0);
        late_start.add(start, 9, 9);
        assert_eq!(late_start.sum(start + Duration::from_secs(1)), counts(1, 0));
    }

    #[test]
    fn length_is_compared_after_rounding_and_clear_forgets() {
        let mut window = SlidingWindow::new(Duration::ZERO);
        assert!(window.has_length(Duration::from_millis(5)));
        assert!(!window.has_length(Duration::from_secs(1)));
        let now = Instant::now();
        window.add(now, 2, 1);
        window.clear();
        assert_eq!(window.sum(now), counts(0, 0));
    }
}
