//! What every status computation reads (the [`StatusPlan`] of one published compile) and returns (a
//! [`StatusChange`]: the merge patch, the conditions before and after, and extra Events).
//! Usage figures come separately, from the [`crate::usage::UsageView`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use sluice_crds::compile::{Kind, ObjectRef, Outcome};

use super::conditions::Publication;
use super::virtual_key::desired::KeyFacts;

/// The result of one compile and publication, from which every status is computed.
#[derive(Clone, Debug)]
pub struct StatusPlan {
    pub gateway: String,
    pub outcomes: BTreeMap<ObjectRef, Outcome>,
    /// `(kind, namespace/name)` of every resource in the published snapshot.
    pub published: BTreeSet<(Kind, String)>,
    pub publication: Publication,
    /// Status facts of virtual keys by id.
    pub key_facts: BTreeMap<String, KeyFacts>,
}

impl StatusPlan {
    /// The compiler's outcome for `kind` `namespace/name`, if it compiled that resource.
    pub fn outcome(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Outcome> {
        self.outcomes.get(&ObjectRef {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Whether `kind` `id` is in the published snapshot.
    pub fn in_snapshot(&self, kind: Kind, id: &str) -> bool {
        self.published.contains(&(kind, id.to_owned()))
    }
}

/// A status that differs from the live one.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// JSON merge patch of the status subresource, touching only the fields the operator owns.
    pub patch: serde_json::Value,
    pub before: Vec<Condition>,
    pub after: Vec<Condition>,
    /// Events to record once the patch is written, besides condition transitions (budget thresholds).
    pub announcements: Vec<Announcement>,
}

/// An Event that is not a condition transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: &'static str,
    /// The Event's action. Events with the same reason and action about one object are merged into a
    /// series by the recorder, so distinct announcements need distinct actions.
    pub action: String,
    pub note: String,
}
