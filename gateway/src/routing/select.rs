//! Strategy and region rules that turn a route's backends into an ordered list of candidates.

use std::cmp::Ordering;

use sluice_crds::v1alpha1::RoutingStrategy;

use super::swrr::SmoothWeighted;

/// What selection needs to know about one backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendView<'a> {
    pub priority: u32,
    pub weight: u32,
    pub region: Option<&'a str>,
    /// Observed latency average in seconds (`None`: never measured).
    pub latency: Option<f64>,
    /// Price used by `lowest-cost`, in dollars per million tokens (`None`: unpriced).
    pub price: Option<f64>,
}

/// The inputs of one decision.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub strategy: RoutingStrategy,
    pub backends: &'a [BackendView<'a>],
    /// Regions the route allows (empty: any).
    pub route_regions: &'a [String],
    /// Regions the caller's key allows (empty: any).
    pub key_regions: &'a [String],
}

/// Whether a backend in `region` may serve a request restricted by both lists. A backend without a region
/// cannot prove where it runs, so any restriction excludes it.
pub fn region_allowed(
    region: Option<&str>,
    route_regions: &[String],
    key_regions: &[String],
) -> bool {
    let allowed_by = |list: &[String]| {
        list.is_empty() || region.is_some_and(|r| list.iter().any(|allowed| allowed == r))
    };
    allowed_by(route_regions) && allowed_by(key_regions)
}

/// Orders the eligible backends: the strategy's choice first, then the fallbacks.
///
/// - `priority-failover`: by `priority`, then declaration order.
/// - `weighted`: one smooth weighted round-robin pick (weight 0 never picked first), then the rest by priority.
/// - `least-latency`: by latency average; unmeasured backends count as fastest so they get measured.
/// - `lowest-cost`: by price; unpriced backends last.
///
/// Ties always fall back to priority and then declaration order, so every decision is deterministic.
pub fn order_candidates(selection: &Selection<'_>, swrr: &SmoothWeighted) -> Vec<usize> {
    let backends = selection.backends;
    let mut eligible: Vec<usize> = (0..backends.len())
        .filter(|&i| {
            region_allowed(
                backends[i].region,
                selection.route_regions,
                selection.key_regions,
            )
        })
        .collect();
    let by_priority = |a: &usize, b: &usize| {
        backends[*a]
            .priority
            .cmp(&backends[*b].priority)
            .then(a.cmp(b))
    };
    match selection.strategy {
        RoutingStrategy::PriorityFailover => eligible.sort_by(by_priority),
        RoutingStrategy::Weighted => {
            eligible.sort_by(by_priority);
            let weights: Vec<(usize, u32)> =
                eligible.iter().map(|&i| (i, backends[i].weight)).collect();
            if let Some(first) = swrr.pick(&weights)
                && let Some(position) = eligible.iter().position(|&i| i == first)
            {
                let chosen = eligible.remove(position);
                eligible.insert(0, chosen);
            }
        }
        RoutingStrategy::LeastLatency => eligible.sort_by(|a, b| {
            let latency = |i: usize| backends[i].latency.unwrap_or(0.0);
            latency(*a)
                .partial_cmp(&latency(*b))
                .unwrap_or(Ordering::Equal)
                .then_with(|| by_priority(a, b))
        }),
        RoutingStrategy::LowestCost => eligible.sort_by(|a, b| {
            let price = |i: usize| backends[i].price.unwrap_or(f64::INFINITY);
            price(*a)
                .partial_cmp(&price(*b))
                .unwrap_or(Ordering::Equal)
                .then_with(|| by_priority(a, b))
        }),
    }
    eligible
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(priority: u32, weight: u32) -> BackendView<'static> {
        BackendView {
            priority,
            weight,
            region: None,
            latency: None,
            price: None,
        }
    }

    fn order(strategy: RoutingStrategy, backends: &[BackendView<'_>]) -> Vec<usize> {
        let selection = Selection {
            strategy,
            backends,
            route_regions: &[],
            key_regions: &[],
        };
        order_candidates(&selection, &SmoothWeighted::default())
    }

    #[test]
    fn strategies_order_candidates() {
        let latency = |l: Option<f64>, priority| BackendView {
            latency: l,
            ..view(priority, 1)
        };
        let price = |p: Option<f64>, priority| BackendView {
            price: p,
            ..view(priority, 1)
        };
        let cases: Vec<(&str, RoutingStrategy, Vec<BackendView<'static>>, Vec<usize>)> = vec![
            (
                "priority sorts by value",
                RoutingStrategy::PriorityFailover,
                vec![view(2, 1), view(0, 1), view(1, 1)],
                vec![1, 2, 0],
            ),
            (
                "priority ties keep declaration order",
                RoutingStrategy::PriorityFailover,
                vec![view(0, 1), view(0, 1)],
                vec![0, 1],
            ),
            (
                "least latency prefers the fastest",
                RoutingStrategy::LeastLatency,
                vec![
                    latency(Some(0.3), 0),
                    latency(Some(0.1), 1),
                    latency(Some(0.2), 2),
                ],
                vec![1, 2, 0],
            ),
            (
                "least latency explores unmeasured backends first",
                RoutingStrategy::LeastLatency,
                vec![latency(Some(0.1), 0), latency(None, 1)],
                vec![1, 0],
            ),
            (
                "lowest cost puts unpriced last",
                RoutingStrategy::LowestCost,
                vec![price(None, 0), price(Some(15.0), 1), price(Some(0.6), 2)],
                vec![2, 1, 0],
            ),
            (
                "lowest cost ties fall back to priority",
                RoutingStrategy::LowestCost,
                vec![price(Some(1.0), 5), price(Some(1.0), 1)],
                vec![1, 0],
            ),
            (
                "weighted first pick is the heaviest",
                RoutingStrategy::Weighted,
                vec![view(0, 1), view(1, 5)],
                vec![1, 0],
            ),
            (
                "weighted with zero weights falls back to priority",
                RoutingStrategy::Weighted,
                vec![view(3, 0), view(1, 0)],
                vec![1, 0],
            ),
        ];
        for (name, strategy, backends, expected) in cases {
            assert_eq!(order(strategy, &backends), expected, "{name}");
        }
    }

    #[test]
    fn weighted_first_picks_follow_weights_and_fallbacks_follow_priority() {
        let backends = [view(0, 3), view(1, 1), view(2, 0)];
        let selection = Selection {
            strategy: RoutingStrategy::Weighted,
            backends: &backends,
            route_regions: &[],
            key_regions: &[],
        };
        let swrr = SmoothWeighted::default();
        let orders: Vec<Vec<usize>> = (0..4)
            .map(|_| order_candidates(&selection, &swrr))
            .collect();
        assert_eq!(
            orders,
            vec![vec![0, 1, 2], vec![0, 1, 2], vec![1, 0, 2], vec![0, 1, 2]]
        );
    }

    #[test]
    fn regions_from_route_and_key_both_restrict() {
        let eu = BackendView {
            region: Some("eu"),
            ..view(0, 1)
        };
        let us = BackendView {
            region: Some("us"),
            ..view(1, 1)
        };
        let nowhere = view(2, 1);
        let backends = [eu, us, nowhere];
        let regions = |route: &[&str], key: &[&str]| -> Vec<usize> {
            let route: Vec<String> = route.iter().map(|s| (*s).to_owned()).collect();
            let key: Vec<String> = key.iter().map(|s| (*s).to_owned()).collect();
            let selection = Selection {
                strategy: RoutingStrategy::PriorityFailover,
                backends: &backends,
                route_regions: &route,
                key_regions: &key,
            };
            order_candidates(&selection, &SmoothWeighted::default())
        };
        assert_eq!(regions(&[], &[]), vec![0, 1, 2], "no restriction");
        assert_eq!(
            regions(&["eu"], &[]),
            vec![0],
            "route restricts; a backend without region is excluded"
        );
        assert_eq!(regions(&[], &["us"]), vec![1], "key restricts");
        assert_eq!(regions(&["eu", "us"], &["us"]), vec![1], "intersection");
        assert_eq!(
            regions(&["eu"], &["us"]),
            Vec::<usize>::new(),
            "disjoint lists leave nothing"
        );
    }
}
