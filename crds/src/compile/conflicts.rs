//! First come, first served: resources claim names (route model names, key hashes); the oldest
//! claimant of a name keeps it and every later resource that claims any of its names loses all of
//! them, so a resource is either served under all its names or not at all.

use std::collections::BTreeMap;

/// One resource's claim.
#[derive(Debug)]
pub(super) struct Claim<'a, A: Ord> {
    /// Orders claimants: the smallest is the oldest and wins (see [`super::age_key`]).
    pub(super) age: A,
    pub(super) names: Vec<&'a str>,
}

/// A claim that lost: which claim (by index) holds the contested name.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Lost<'a> {
    pub(super) name: &'a str,
    pub(super) winner: usize,
}

/// For each claim (by index into `claims`) that lost, the name it lost and the index of the winner.
pub(super) fn resolve<'a, A: Ord>(claims: &[Claim<'a, A>]) -> BTreeMap<usize, Lost<'a>> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by(|&a, &b| claims[a].age.cmp(&claims[b].age));
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lost = BTreeMap::new();
    for i in order {
        let taken = claims[i]
            .names
            .iter()
            .find_map(|name| owners.get(name).map(|&winner| Lost { name, winner }));
        match taken {
            Some(loss) => {
                lost.insert(i, loss);
            }
            None => {
                for name in &claims[i].names {
                    owners.insert(name, i);
                }
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(age: u32, names: &[&'static str]) -> Claim<'static, u32> {
        Claim {
            age,
            names: names.to_vec(),
        }
    }

    #[test]
    fn the_oldest_claimant_keeps_a_name_and_losers_keep_nothing() {
        // (claims, losers as (loser, contested name, winner))
        type Case = (Vec<Claim<'static, u32>>, Vec<(usize, &'static str, usize)>);
        let cases: Vec<Case> = vec![
            // No overlap: everyone wins.
            (vec![claim(1, &["a"]), claim(2, &["b"])], vec![]),
            // The younger one loses, whatever the input order.
            (vec![claim(2, &["a"]), claim(1, &["a"])], vec![(0, "a", 1)]),
            // An alias collides with another route's model.
            (
                vec![claim(1, &["a", "b"]), claim(2, &["c", "b"])],
                vec![(1, "b", 0)],
            ),
            // A loser does not keep its other names: the third claim gets "c".
            (
                vec![claim(1, &["a"]), claim(2, &["a", "c"]), claim(3, &["c"])],
                vec![(1, "a", 0)],
            ),
        ];
        for (claims, expected) in cases {
            let lost = resolve(&claims);
            let got: Vec<(usize, &str, usize)> =
                lost.iter().map(|(&i, l)| (i, l.name, l.winner)).collect();
            assert_eq!(got, expected);
        }
    }
}
