//! The time source of usage folding and budget windows, injectable so a test can cross a calendar boundary.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// Where the operator reads the current time for budget windows and status timestamps.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Real time moved by an offset that can be changed while the operator runs: time still flows, so a test
/// can place "now" a few seconds before the end of a month and watch the window roll over for real.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicI64,
}

impl ShiftedClock {
    /// A clock that reads real time until [`ShiftedClock::set_now`] moves it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock so that it reads `now` at this instant (and keeps flowing from there).
    pub fn set_now(&self, now: DateTime<Utc>) {
        let offset = (now - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_shifted_clock_reads_the_time_it_was_set_to_and_keeps_flowing() {
        let clock = ShiftedClock::new();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 2);
        let target = Utc
            .with_ymd_and_hms(2025, 1, 31, 23, 59, 58)
            .single()
            .expect("time");
        clock.set_now(target);
        let read = clock.now();
        assert!(read >= target && read - target < chrono::Duration::seconds(2));
    }
}
