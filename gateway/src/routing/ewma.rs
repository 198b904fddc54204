//! Exponentially weighted moving average of a backend's observed latency, lock-free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Weight of the newest sample. 0.3 follows a shift in latency within a handful of requests while one
/// slow outlier moves the average by less than a third of its excess.
pub const EWMA_ALPHA: f64 = 0.3;

/// Latency average in seconds; `None` until the first sample.
#[derive(Debug)]
pub struct LatencyEwma {
    /// `f64` bits; NaN means "no sample yet".
    bits: AtomicU64,
}

impl Default for LatencyEwma {
    fn default() -> Self {
        Self {
            bits: AtomicU64::new(f64::NAN.to_bits()),
        }
    }
}

impl LatencyEwma {
    /// The current average, if any sample was recorded.
    pub fn get(&self) -> Option<f64> {
        let value = f64::from_bits(self.bits.load(Ordering::Relaxed));
        (!value.is_nan()).then_some(value)
    }

    /// Folds a sample in.
    pub fn observe(&self, sample: Duration) {
        let sample = sample.as_secs_f64();
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old.is_nan() {
                    sample
                } else {
                    EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * old
                };
                Some(new.to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_empty_then_follows_samples() {
        let ewma = LatencyEwma::default();
        assert_eq!(ewma.get(), None);
        ewma.observe(Duration::from_millis(100));
        assert!((ewma.get().unwrap() - 0.1).abs() < 1e-9);
        ewma.observe(Duration::from_millis(200));
        assert!((ewma.get().unwrap() - 0.13).abs() < 1e-9);
        for _ in 0..50 {
            ewma.observe(Duration::from_millis(200));
        }
        assert!((ewma.get().unwrap() - 0.2).abs() < 1e-6);
    }
}
