//! What every status computation reads (the [`StatusPlan`] of one published compile) and returns (a
//! [`StatusChange`]: the merge patch and the conditions before and after, for Events).

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
}
