//! Conversions of spec parts that routes and keys share: rate limits and budget references.

use super::problems::{Problems, dedup};
use crate::config::{RateLimitConfig, object_id};
use crate::v1alpha1::{BudgetRef, RateLimit};

/// A rate limit with at least one positive bound.
pub(super) fn rate_limit(
    field: &str,
    limit: &RateLimit,
    problems: &mut Problems,
) -> RateLimitConfig {
    if limit.requests_per_minute.is_none() && limit.tokens_per_minute.is_none() {
        problems.invalid(field, "needs requestsPerMinute, tokensPerMinute or both");
    }
    RateLimitConfig {
        requests_per_minute: limit
            .requests_per_minute
            .map(|n| problems.at_least_u64(format_args!("{field}.requestsPerMinute"), n, 1)),
        tokens_per_minute: limit
            .tokens_per_minute
            .map(|n| problems.at_least_u64(format_args!("{field}.tokensPerMinute"), n, 1)),
    }
}

/// Ids of the Budgets referenced from `namespace`, repeats dropped (a request is charged once).
pub(super) fn budget_ids(namespace: &str, refs: &[BudgetRef]) -> Vec<String> {
    dedup(refs.iter().map(|r| object_id(namespace, &r.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_need_a_positive_bound() {
        let cases = [
            (Some(60), None, Ok((Some(60), None))),
            (None, Some(1_000), Ok((None, Some(1_000)))),
            (
                None,
                None,
                Err("spec.rateLimit: needs requestsPerMinute, tokensPerMinute or both"),
            ),
            (
                Some(0),
                None,
                Err("spec.rateLimit.requestsPerMinute: must be at least 1, got 0"),
            ),
        ];
        for (rpm, tpm, expected) in cases {
            let mut problems = Problems::new();
            let limit = RateLimit {
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
            };
            let got = rate_limit("spec.rateLimit", &limit, &mut problems);
            match (problems.into_result(), expected) {
                (Ok(()), Ok(want)) => {
                    assert_eq!((got.requests_per_minute, got.tokens_per_minute), want)
                }
                (Err(problem), Err(want)) => assert_eq!(problem.message, want),
                (got, want) => panic!("{rpm:?}/{tpm:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn budget_refs_become_namespaced_ids_once_each() {
        let refs = ["monthly", "team", "monthly"].map(|name| BudgetRef { name: name.into() });
        assert_eq!(
            budget_ids("team-a", &refs),
            vec!["team-a/monthly", "team-a/team"]
        );
    }
}
