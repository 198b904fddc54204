//! Smooth weighted round-robin (nginx's algorithm): deterministic, and spreads picks evenly within a cycle.

use std::sync::{Mutex, PoisonError};

/// Per-route counters. Picks over any subset of the backends (those currently eligible); each backend keeps
/// its own running counter.
#[derive(Debug, Default)]
pub struct SmoothWeighted {
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    /// Picks among `(index, weight)` pairs; backends with weight 0 are never picked. `None` when no
    /// candidate has a positive weight.
    pub fn pick(&self, candidates: &[(usize, u32)]) -> Option<usize> {
        let total: i64 = candidates
            .iter()
            .map(|(_, weight)| i64::from(*weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let needed = candidates
            .iter()
            .map(|(index, _)| index + 1)
            .max()
            .unwrap_or(0);
        if current.len() < needed {
            current.resize(needed, 0);
        }
        let mut best: Option<usize> = None;
        for &(index, weight) in candidates {
            if weight == 0 {
                continue;
            }
            current[index] += i64::from(weight);
            if best.is_none_or(|b| current[index] > current[b]) {
                best = Some(index);
            }
        }
        if let Some(best) = best {
            current[best] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[(usize, u32)], picks: usize) -> Vec<usize> {
        let swrr = SmoothWeighted::default();
        (0..picks).map(|_| swrr.pick(weights).unwrap()).collect()
    }

    #[test]
    fn follows_nginx_smooth_sequence() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a (not a a a a a b c).
        assert_eq!(
            sequence(&[(0, 5), (1, 1), (2, 1)], 7),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn shares_match_weights_exactly_per_cycle() {
        let picks = sequence(&[(0, 3), (1, 2), (2, 0), (3, 5)], 1000);
        let count = |i| picks.iter().filter(|p| **p == i).count();
        assert_eq!((count(0), count(1), count(2), count(3)), (300, 200, 0, 500));
    }

    #[test]
    fn all_zero_weights_pick_nothing() {
        assert_eq!(SmoothWeighted::default().pick(&[(0, 0), (1, 0)]), None);
        assert_eq!(SmoothWeighted::default().pick(&[]), None);
    }

    #[test]
    fn a_subset_pick_only_returns_members() {
        let swrr = SmoothWeighted::default();
        for _ in 0..10 {
            assert_eq!(swrr.pick(&[(2, 1)]), Some(2));
        }
    }
}
