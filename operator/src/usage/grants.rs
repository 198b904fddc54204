//! Budget grants: how much more spend one gateway may admit before its next report, so that all gateways
//! together cannot pass a budget's limit.
//!
//! # The rule
//!
//! For a budget with limit `L` and folded spend `S` in its window, the remaining amount is `R = L − S`.
//! When reporter `r` is acknowledged, its previous grant is replaced by
//!
//! ```text
//! grant(r) = min(R / (n + 1), R − Σ outstanding grants of the other reporters)
//! ```
//!
//! where `n` counts the reporters that enforce the budget. One share of the remainder is always left
//! unclaimed, so a gateway that starts (or asks for the first time) gets a grant at once instead of
//! waiting until the others have reported; the price is that a lone gateway may admit half of the
//! remainder per acknowledgement, which only matters once the remainder is close to one request's cost. A reporter admits a request only while its
//! reservations (plus settled but unreported cost) fit in its grant, and everything it admitted under the
//! old grant is either folded into `S` by this very report or still reserved under the new one. So
//! `S + Σ grants ≤ L` holds after every acknowledgement, by induction.
//!
//! # Overshoot bound
//!
//! Spend can pass the limit only where a request's actual cost exceeds what the gateway reserved for it
//! (the reservation is the prompt estimate plus the request's maximum output at the route's prices). The
//! overshoot is therefore at most the sum, over requests in flight on all gateways, of (actual −
//! reserved) cost — zero when reservations are true maxima. A new reporter that appears while grants are
//! outstanding gets only what the others left (never more than `R − Σ others`), so growing a gateway
//! fleet does not loosen the bound; it only splits `R` finer.

use sluice_crds::usage::NanoUsd;

/// The grant for one reporter: a fair share of what remains (one share kept free for a newcomer), but
/// never more than the others left over. `active_reporters` includes the reporter itself.
pub fn grant(
    limit: NanoUsd,
    spent: NanoUsd,
    others_outstanding: NanoUsd,
    active_reporters: usize,
) -> NanoUsd {
    let remaining = limit.saturating_sub(spent);
    let reporters = u64::try_from(active_reporters.max(1)).unwrap_or(u64::MAX);
    (remaining / reporters.saturating_add(1)).min(remaining.saturating_sub(others_outstanding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_split_the_remainder_and_never_exceed_it() {
        // (limit, spent, others' grants, reporters) -> grant
        let cases = [
            (1_000, 0, 0, 1, 500),
            (1_000, 400, 0, 1, 300),
            (1_000, 400, 0, 3, 150),
            // The others already hold most of the remainder: only what is left.
            (1_000, 400, 500, 3, 100),
            (1_000, 400, 700, 3, 0),
            // A newcomer next to two reporters holding their shares of 1/3 each gets one at once.
            (900, 0, 600, 3, 225),
            // Spent past the limit (reservations under-estimated): nothing more.
            (1_000, 1_200, 0, 2, 0),
            (0, 0, 0, 1, 0),
        ];
        for (limit, spent, others, reporters, want) in cases {
            assert_eq!(
                grant(limit, spent, others, reporters),
                want,
                "grant({limit}, {spent}, {others}, {reporters})"
            );
        }
    }

    #[test]
    fn successive_grants_keep_spend_plus_outstanding_within_the_limit() {
        // Three reporters acknowledged in turn, each spending its whole grant before its next report.
        let limit = 1_000_000;
        let mut spent = 0;
        let mut grants = [0u64; 3];
        for round in 0..30 {
            let r = round % 3;
            spent += grants[r];
            let others: u64 = (0..3).filter(|o| *o != r).map(|o| grants[o]).sum();
            grants[r] = grant(limit, spent, others, 3);
            assert!(
                spent + grants.iter().sum::<u64>() <= limit,
                "round {round}: spent {spent} + grants {grants:?} > {limit}"
            );
        }
        assert!(spent > limit * 9 / 10, "the budget is usable: {spent}");
    }
}
