//! Sticky weighted assignment for A/B splits: a hash of the caller (its key, or a header value) picks one
//! backend in proportion to the weights, the same one on every request, replica and restart.
//!
//! Weighted rendezvous hashing: each backend scores `weight / -ln(u)` with `u` a uniform draw from the hash
//! of (route, caller, backend name), and the highest score wins. A backend wins with probability
//! `weight / Σ weight`, and changing one backend's weight (or removing one) only moves the callers that
//! backend gains or loses.

use sha2::{Digest, Sha256};

use super::select::{Selection, region_allowed};

/// The candidates for `subject`: the sticky pick first (among backends with a weight above 0), then the
/// other eligible backends by priority and declaration order as fallbacks. Region rules apply as in
/// [`super::order_candidates`]; `names` are the backends' names, in the order of `selection.backends`.
pub fn sticky_order(
    selection: &Selection<'_>,
    names: &[&str],
    route_id: &str,
    subject: &str,
) -> Vec<usize> {
    let backends = selection.backends;
    let mut order: Vec<usize> = (0..backends.len())
        .filter(|&i| {
            region_allowed(
                backends[i].region,
                selection.route_regions,
                selection.key_regions,
            )
        })
        .collect();
    order.sort_by_key(|&i| (backends[i].priority, i));
    let pick = order
        .iter()
        .copied()
        .filter(|&i| backends[i].weight > 0)
        .map(|i| {
            let name = names.get(i).copied().unwrap_or_default();
            (score(route_id, subject, name, backends[i].weight), i)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, i)| i);
    if let Some(pick) = pick
        && let Some(position) = order.iter().position(|&i| i == pick)
    {
        let chosen = order.remove(position);
        order.insert(0, chosen);
    }
    order
}

/// `weight / -ln(u)` for the caller's uniform draw `u` in (0, 1) on this backend.
fn score(route_id: &str, subject: &str, backend: &str, weight: u32) -> f64 {
    let mut hasher = Sha256::new();
    for part in [route_id, subject, backend] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 random bits, offset by half a step so the draw is never 0 or 1.
    let draw = ((u64::from_be_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -draw.ln()
}

#[cfg(test)]
mod tests {
    use sluice_crds::v1alpha1::RoutingStrategy;

    use super::*;
    use crate::routing::BackendView;

    fn view(priority: u32, weight: u32, region: Option<&'static str>) -> BackendView<'static> {
        BackendView {
            priority,
            weight,
            region,
            latency: None,
            price: None,
        }
    }

    fn order(backends: &[BackendView<'_>], key_regions: &[String], subject: &str) -> Vec<usize> {
        let selection = Selection {
            strategy: RoutingStrategy::Weighted,
            backends,
            route_regions: &[],
            key_regions,
        };
        sticky_order(&selection, &["a", "b", "c"], "ns/route", subject)
    }

    #[test]
    fn a_caller_always_gets_the_same_backend_and_the_split_follows_the_weights() {
        let backends = [view(0, 90, None), view(1, 10, None)];
        let mut counts = [0usize; 2];
        for caller in 0..10_000 {
            let subject = format!("caller-{caller}");
            let first = order(&backends, &[], &subject);
            assert_eq!(first, order(&backends, &[], &subject), "deterministic");
            assert_eq!(first.len(), 2, "the other backend stays a fallback");
            counts[first[0]] += 1;
        }
        // 10 000 draws at p = 0.1: the standard deviation is 30, so ±150 is five of them.
        assert!((850..=1150).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn raising_one_weight_only_moves_callers_to_that_backend() {
        let before = [view(0, 50, None), view(0, 50, None), view(0, 50, None)];
        let after = [view(0, 50, None), view(0, 50, None), view(0, 100, None)];
        for caller in 0..2_000 {
            let subject = format!("c{caller}");
            let (was, is) = (
                order(&before, &[], &subject)[0],
                order(&after, &[], &subject)[0],
            );
            assert!(was == is || is == 2, "{subject} moved from {was} to {is}");
        }
    }

    #[test]
    fn zero_weights_are_never_picked_and_regions_filter_first() {
        let backends = [
            view(0, 0, Some("us")),
            view(1, 5, Some("eu")),
            view(2, 5, Some("us")),
        ];
        for caller in 0..200 {
            let subject = format!("c{caller}");
            assert_ne!(order(&backends, &[], &subject)[0], 0);
            assert_eq!(order(&backends, &["eu".to_owned()], &subject), vec![1]);
        }
        let none = [view(0, 0, None), view(1, 0, None)];
        assert_eq!(
            order(&none, &[], "x"),
            vec![0, 1],
            "no weight: priority order"
        );
    }
}
