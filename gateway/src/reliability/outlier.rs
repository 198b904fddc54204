//! Outlier ejection across a route's backends: one that fails clearly more often than its peers is moved
//! behind them in the attempt order.
//!
//! The breaker judges each backend against absolute thresholds; this catches the backend that is bad
//! *relative to the others* while still below them (20 % errors next to peers at 0 %). Ejection is soft:
//! an outlier stays a fallback, so the last backend able to answer is never taken away, and at most
//! half of a route's backends are demoted at once. A demoted backend gets fewer requests, its window
//! empties below `min_requests`, and it is judged afresh — recovery needs no timer.

use super::window::WindowCounts;

/// How much worse than the best judged peer a backend's failure rate must be, in percentage points.
/// Noise between healthy backends stays well below this.
pub const OUTLIER_MARGIN_PERCENT: u64 = 20;

/// Which backends are outliers, given each one's breaker window (`requests`, failures in `marked`).
/// Only backends with at least `min_requests` are judged or used as a reference; with fewer than two
/// of them there is nothing to compare, and nobody is ejected.
pub fn outliers(windows: &[WindowCounts], min_requests: u64) -> Vec<bool> {
    let judged = |counts: &WindowCounts| counts.requests >= min_requests.max(1);
    // Failure rates in basis points, so the comparison stays in integers.
    let rate = |counts: &WindowCounts| counts.marked.saturating_mul(10_000) / counts.requests;
    let mut ejected = vec![false; windows.len()];
    let Some(best) = windows.iter().filter(|c| judged(c)).map(rate).min() else {
        return ejected;
    };
    let mut candidates: Vec<(u64, usize)> = windows
        .iter()
        .enumerate()
        .filter(|(_, counts)| judged(counts))
        .map(|(index, counts)| (rate(counts), index))
        .filter(|(rate, _)| *rate >= best + OUTLIER_MARGIN_PERCENT * 100)
        .collect();
    // Worst first, so the cap keeps the healthiest of the demoted in front.
    candidates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in candidates.into_iter().take(windows.len() / 2) {
        ejected[index] = true;
    }
    ejected
}

/// Moves ejected backends (by route backend index) behind the others, keeping each group's order.
pub fn demote(order: &mut [usize], ejected: &[bool]) {
    order.sort_by_key(|&index| ejected.get(index).copied().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(requests: u64, failures: u64) -> WindowCounts {
        WindowCounts {
            requests,
            marked: failures,
        }
    }

    #[test]
    fn outlier_table() {
        let cases: [(&str, Vec<WindowCounts>, Vec<bool>); 7] = [
            (
                "one clearly worse",
                vec![w(100, 0), w(100, 25), w(100, 2)],
                vec![false, true, false],
            ),
            (
                "within the margin",
                vec![w(100, 5), w(100, 24)],
                vec![false, false],
            ),
            (
                "peers without enough traffic are no reference",
                vec![w(100, 40), w(5, 0)],
                vec![false, false],
            ),
            (
                "a lone judged backend is never ejected",
                vec![w(100, 90)],
                vec![false],
            ),
            (
                "at most half are ejected, worst first",
                vec![w(100, 0), w(100, 50), w(100, 60), w(100, 30)],
                vec![false, true, true, false],
            ),
            (
                "all equally bad: nobody is an outlier",
                vec![w(100, 40), w(100, 40)],
                vec![false, false],
            ),
            ("no data", vec![w(0, 0), w(0, 0)], vec![false, false]),
        ];
        for (name, windows, expected) in cases {
            assert_eq!(outliers(&windows, 20), expected, "{name}");
        }
    }

    #[test]
    fn demotion_keeps_order_within_groups_and_never_removes() {
        let mut order = vec![2, 0, 3, 1];
        demote(&mut order, &[true, false, true, false]);
        assert_eq!(order, vec![3, 1, 2, 0]);
        let mut only = vec![0];
        demote(&mut only, &[true]);
        assert_eq!(only, vec![0], "the last backend stays");
    }
}
