//! Pure condition bookkeeping shared by every kind: the Accepted / ResolvedRefs / Ready conditions from
//! a compiler outcome, merging them into the existing list (keeping `lastTransitionTime` while the
//! status holds), and the transitions that deserve an Event.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sluice_crds::compile::{Outcome, Problem};
use sluice_crds::conditions::{self as types, reason};

/// A condition as the operator wants it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Wanted {
    fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Whether the last publication reached the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publication {
    Published,
    /// Publishing has kept failing; the message says why.
    Failed(String),
}

/// The three standard conditions for one resource. `in_snapshot` says whether the resource is in the
/// snapshot that was published; only then is it Ready.
pub fn standard(
    outcome: &Outcome,
    in_snapshot: bool,
    publication: &Publication,
    gateway: &str,
) -> Vec<Wanted> {
    let accepted = match &outcome.accepted {
        Ok(()) => Wanted::new(types::ACCEPTED, true, reason::ACCEPTED, "the spec is valid"),
        Err(problem) => from_problem(types::ACCEPTED, problem),
    };
    let resolved = match &outcome.resolved_refs {
        Ok(()) => Wanted::new(
            types::RESOLVED_REFS,
            true,
            reason::RESOLVED,
            "every reference resolved",
        ),
        Err(problem) => from_problem(types::RESOLVED_REFS, problem),
    };
    let ready = match (&outcome.accepted, &outcome.resolved_refs, publication) {
        (Err(problem), _, _) => Wanted::new(
            types::READY,
            false,
            reason::NOT_ACCEPTED,
            problem.message.clone(),
        ),
        (Ok(()), Err(problem), _) => Wanted::new(
            types::READY,
            false,
            reason::UNRESOLVED_REFS,
            problem.message.clone(),
        ),
        (Ok(()), Ok(()), Publication::Failed(message)) => Wanted::new(
            types::READY,
            false,
            reason::PUBLISH_FAILED,
            format!("publishing to gateway {gateway:?} failed: {message}"),
        ),
        (Ok(()), Ok(()), Publication::Published) if in_snapshot => Wanted::new(
            types::READY,
            true,
            reason::PUBLISHED,
            format!("published to gateway {gateway:?}"),
        ),
        (Ok(()), Ok(()), Publication::Published) => Wanted::new(
            types::READY,
            false,
            reason::PUBLISH_FAILED,
            format!("not in the configuration published to gateway {gateway:?}"),
        ),
    };
    vec![accepted, resolved, ready]
}

fn from_problem(type_: &'static str, problem: &Problem) -> Wanted {
    Wanted::new(type_, false, problem.reason, problem.message.clone())
}

/// Replaces the conditions of the wanted types in `existing`, keeping each one's `lastTransitionTime`
/// while its status is unchanged, and keeping conditions of other types (written by others) as they are.
pub fn merge(
    existing: &[Condition],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = wanted
        .iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" };
            let previous = existing
                .iter()
                .find(|condition| condition.type_ == want.type_);
            let last_transition_time = match previous {
                Some(previous) if previous.status == status => {
                    previous.last_transition_time.clone()
                }
                _ => to_time(now),
            };
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.to_owned(),
                message: truncate(&want.message),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    merged.extend(
        existing
            .iter()
            .filter(|condition| !wanted.iter().any(|want| want.type_ == condition.type_))
            .cloned(),
    );
    merged
}

/// A condition change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// Changes from `before` to `after` that deserve an Event: a condition turning `False` (or changing
/// its reason while `False`), and `Ready` turning `True` after having been `False`. A resource that is
/// fine from the start gets no Event, so creating 10,000 keys does not create 10,000 Events.
pub fn transitions(before: &[Condition], after: &[Condition]) -> Vec<Transition> {
    after
        .iter()
        .filter_map(|condition| {
            let previous = before
                .iter()
                .find(|previous| previous.type_ == condition.type_);
            let unchanged = previous
                .is_some_and(|p| p.status == condition.status && p.reason == condition.reason);
            let worth = match condition.status.as_str() {
                "False" => !unchanged,
                "True" => {
                    condition.type_ == types::READY && previous.is_some_and(|p| p.status == "False")
                }
                _ => false,
            };
            worth.then(|| Transition {
                type_: condition.type_.clone(),
                status: condition.status == "True",
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            })
        })
        .collect()
}

/// Converts a chrono time into the API's `Time`.
pub fn to_time(time: DateTime<Utc>) -> Time {
    // Whole seconds: the API serializes `Time` with second precision, so a value read back compares equal.
    Time(
        k8s_openapi::jiff::Timestamp::from_second(time.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Condition messages are limited to 32 KiB by the API; keep well below.
const MAX_MESSAGE_BYTES: usize = 4096;

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second)
            .single()
            .expect("time")
    }

    fn ok() -> Outcome {
        Outcome {
            accepted: Ok(()),
            resolved_refs: Ok(()),
        }
    }

    fn problem(reason: &'static str) -> Problem {
        Problem {
            reason,
            message: format!("{reason} happened"),
        }
    }

    fn status_of(conditions: &[Wanted], type_: &str) -> (bool, &'static str) {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason))
            .expect("condition")
    }

    #[test]
    fn ready_needs_acceptance_resolution_publication_and_presence_in_the_snapshot() {
        let failed = Publication::Failed("boom".into());
        let cases = [
            (
                ok(),
                true,
                Publication::Published,
                (true, reason::PUBLISHED),
            ),
            (
                ok(),
                false,
                Publication::Published,
                (false, reason::PUBLISH_FAILED),
            ),
            (ok(), true, failed.clone(), (false, reason::PUBLISH_FAILED)),
            (
                Outcome {
                    accepted: Err(problem(reason::CONFLICT)),
                    resolved_refs: Ok(()),
                },
                false,
                Publication::Published,
                (false, reason::NOT_ACCEPTED),
            ),
            (
                Outcome {
                    accepted: Ok(()),
                    resolved_refs: Err(problem(reason::SECRET_NOT_FOUND)),
                },
                false,
                Publication::Published,
                (false, reason::UNRESOLVED_REFS),
            ),
        ];
        for (outcome, in_snapshot, publication, expected) in cases {
            let conditions = standard(&outcome, in_snapshot, &publication, "prod");
            assert_eq!(
                status_of(&conditions, types::READY),
                expected,
                "{outcome:?} {in_snapshot} {publication:?}"
            );
        }
        let conditions = standard(
            &Outcome {
                accepted: Ok(()),
                resolved_refs: Err(problem(reason::SECRET_NOT_FOUND)),
            },
            false,
            &Publication::Published,
            "prod",
        );
        assert_eq!(
            status_of(&conditions, types::RESOLVED_REFS),
            (false, reason::SECRET_NOT_FOUND)
        );
        assert_eq!(
            status_of(&conditions, types::ACCEPTED),
            (true, reason::ACCEPTED)
        );
    }

    #[test]
    fn merge_keeps_transition_times_while_status_holds_and_foreign_conditions() {
        let first = merge(
            &[],
            &standard(&ok(), true, &Publication::Published, "g"),
            Some(1),
            at(1),
        );
        assert!(
            first
                .iter()
                .all(|c| c.last_transition_time == to_time(at(1)))
        );
        let foreign = Condition {
            type_: types::THRESHOLD_REACHED.into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: to_time(at(0)),
        };
        let mut existing = first.clone();
        existing.push(foreign.clone());
        let broken = Outcome {
            accepted: Ok(()),
            resolved_refs: Err(problem(reason::SECRET_NOT_FOUND)),
        };
        let second = merge(
            &existing,
            &standard(&broken, false, &Publication::Published, "g"),
            Some(2),
            at(2),
        );
        let time_of = |conditions: &[Condition], type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| c.last_transition_time.clone())
                .expect("condition")
        };
        assert_eq!(
            time_of(&second, types::ACCEPTED),
            to_time(at(1)),
            "unchanged status keeps its time"
        );
        assert_eq!(time_of(&second, types::RESOLVED_REFS), to_time(at(2)));
        assert_eq!(time_of(&second, types::READY), to_time(at(2)));
        assert!(
            second.contains(&foreign),
            "conditions of other writers are kept"
        );
        assert!(
            second
                .iter()
                .all(|c| c.type_ == types::THRESHOLD_REACHED || c.observed_generation == Some(2))
        );
    }

    #[test]
    fn events_fire_on_failures_and_recovery_but_not_for_a_healthy_start() {
        let healthy = merge(
            &[],
            &standard(&ok(), true, &Publication::Published, "g"),
            Some(1),
            at(1),
        );
        assert_eq!(
            transitions(&[], &healthy),
            vec![],
            "a healthy start is quiet"
        );
        assert_eq!(
            transitions(&healthy, &healthy),
            vec![],
            "no change, no event"
        );
        let broken_outcome = Outcome {
            accepted: Ok(()),
            resolved_refs: Err(problem(reason::SECRET_NOT_FOUND)),
        };
        let broken = merge(
            &healthy,
            &standard(&broken_outcome, false, &Publication::Published, "g"),
            Some(1),
            at(2),
        );
        let fired: Vec<(String, bool)> = transitions(&healthy, &broken)
            .into_iter()
            .map(|t| (t.type_, t.status))
            .collect();
        assert_eq!(
            fired,
            vec![
                (types::RESOLVED_REFS.to_owned(), false),
                (types::READY.to_owned(), false)
            ]
        );
        assert_eq!(
            transitions(&broken, &broken),
            vec![],
            "a lasting failure fires once"
        );
        let healed = merge(
            &broken,
            &standard(&ok(), true, &Publication::Published, "g"),
            Some(1),
            at(3),
        );
        let fired: Vec<(String, bool)> = transitions(&broken, &healed)
            .into_iter()
            .map(|t| (t.type_, t.status))
            .collect();
        assert_eq!(fired, vec![(types::READY.to_owned(), true)]);
        let broken_from_start = merge(
            &[],
            &standard(&broken_outcome, false, &Publication::Published, "g"),
            Some(1),
            at(1),
        );
        assert_eq!(
            transitions(&[], &broken_from_start).len(),
            2,
            "a resource broken from the start fires"
        );
    }
}
