//! The pure compiler: every LLMRoute, VirtualKey and Budget of one gateway (plus the Secrets they
//! reference) → one validated [`Snapshot`], and an [`Outcome`] per resource for its conditions.
//!
//! Rules, in the order they apply:
//! - Only resources whose `spec.gateway` names [`Inputs::gateway`] are compiled; others get no outcome.
//! - Each resource is checked on its own: a spec problem sets [`Outcome::accepted`] (reason `Invalid`),
//!   a missing or forbidden Secret/Budget sets [`Outcome::resolved_refs`]. All problems of one
//!   resource are reported together. A resource with either problem is left out of the snapshot and
//!   never affects the others.
//! - Budgets compile first; routes and keys may only reference accepted Budgets of the same gateway.
//! - Two spec-valid routes claiming one model name (or alias) conflict: the older one (by creation
//!   time, then namespace/name) wins and the other gets `ModelConflict`. The older one wins even
//!   while its own Secrets are missing, so ownership of a name never flips back and forth with the
//!   state of a Secret.
//! - Two keys with the same value conflict the same way (a gateway must map a hash to one key); the
//!   younger gets `ResolvedRefs=False` reason `Invalid`, since the problem lies in its Secret.
//! - A bring-your-own key shorter than [`MIN_KEY_LENGTH`] is likewise `ResolvedRefs=False`, `Invalid`.
//! - Expired and disabled keys stay published (and accepted) so the gateway can say why it refuses
//!   them; a rotated key's previous value is published with `notAfter` while its grace period runs.
//! - The output is sorted by id, so the same inputs always give the same snapshot hash.

mod budget;
mod common;
mod conflicts;
mod endpoint;
mod key;
mod problems;
mod refs;
mod route;
pub mod synthetic;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::config::{GatewayConfig, GatewaySecrets, SCHEMA_VERSION, Snapshot};
use crate::v1alpha1::{Budget, LLMRoute, VirtualKey};

pub use endpoint::{ANTHROPIC_ENDPOINT, GEMINI_ENDPOINT, OPENAI_ENDPOINT, default_endpoint};
pub use key::{
    KEY_DATA_CURRENT, KEY_DATA_PREVIOUS, KEY_DATA_PREVIOUS_EXPIRES_AT, KEY_PREFIX, MIN_KEY_LENGTH,
    generated_key_secret_name, key_display_prefix,
};

/// A Secret's data, base64-decoded, with `stringData` merged in.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The Secrets the compiler may read, by namespace and name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretStore(BTreeMap<(String, String), SecretData>);

/// Shows which Secrets and keys are present, never their values.
impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.0.iter().map(|((namespace, name), data)| {
            (
                crate::config::object_id(namespace, name),
                data.keys().collect::<Vec<_>>(),
            )
        });
        f.debug_map().entries(entries).finish()
    }
}

impl SecretStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the data of Secret `namespace/name`.
    pub fn insert(
        &mut self,
        namespace: impl Into<String>,
        name: impl Into<String>,
        data: SecretData,
    ) {
        self.0.insert((namespace.into(), name.into()), data);
    }

    /// Adds a Secret object, merging `stringData` over `data` as the API server does on write.
    pub fn insert_secret(&mut self, secret: &Secret) {
        let namespace = secret
            .namespace()
            .unwrap_or_else(|| crate::manifests::DEFAULT_NAMESPACE.to_owned());
        self.insert(namespace, secret.name_any(), secret_data(secret));
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&SecretData> {
        self.0.get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The decoded data of a Secret object (`stringData` wins over `data` for the same key).
pub fn secret_data(secret: &Secret) -> SecretData {
    let mut data: SecretData = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect();
    for (key, value) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), value.clone().into_bytes());
    }
    data
}

/// Everything one compilation reads.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The gateway to compile for; resources naming another gateway are ignored.
    pub gateway: &'a str,
    pub routes: &'a [LLMRoute],
    pub keys: &'a [VirtualKey],
    pub budgets: &'a [Budget],
    pub secrets: &'a SecretStore,
    /// Decides whether a rotated key's previous value is still within its grace period.
    pub now: DateTime<Utc>,
}

/// Kind of a compiled resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    LLMRoute,
    VirtualKey,
    Budget,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LLMRoute => "LLMRoute",
            Self::VirtualKey => "VirtualKey",
            Self::Budget => "Budget",
        }
    }
}

/// A namespaced resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    fn of(kind: Kind, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: namespace_of(meta),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// `namespace/name`, the id used in the snapshot.
    pub fn id(&self) -> String {
        crate::config::object_id(&self.namespace, &self.name)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Why a condition is `False`: a reason from [`crate::conditions::reason`] and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// What the compiler decided about one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The spec is valid and does not conflict with another resource.
    pub accepted: Result<(), Problem>,
    /// Every referenced Secret and Budget exists, is permitted and usable.
    pub resolved_refs: Result<(), Problem>,
}

impl Outcome {
    /// Whether the resource is in the snapshot.
    pub fn published(&self) -> bool {
        self.accepted.is_ok() && self.resolved_refs.is_ok()
    }
}

/// The result of one compilation.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    pub snapshot: Snapshot,
    /// One outcome per resource of the gateway.
    pub outcomes: BTreeMap<ObjectRef, Outcome>,
}

/// Compiles all resources of `inputs.gateway` into a snapshot.
pub fn compile(inputs: &Inputs) -> Compiled {
    let mut outcomes = BTreeMap::new();
    let mut secrets = GatewaySecrets::default();

    let budgets = budget::compile_all(inputs, &mut outcomes);
    let directory = refs::BudgetDirectory::new(inputs, &budgets);
    let routes = route::compile_all(inputs, &directory, &mut outcomes, &mut secrets.credentials);
    let keys = key::compile_all(inputs, &directory, &mut outcomes, &mut secrets.key_hashes);

    let config = GatewayConfig {
        schema_version: SCHEMA_VERSION,
        gateway: inputs.gateway.to_owned(),
        routes,
        keys,
        budgets: budgets.into_values().filter_map(Result::ok).collect(),
    };
    Compiled {
        snapshot: Snapshot::new(config, secrets),
        outcomes,
    }
}

pub(crate) fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| crate::manifests::DEFAULT_NAMESPACE.to_owned())
}

/// Which of two claimants is older: by creation time, then namespace/name, so ties break the same way
/// on every run.
pub(crate) fn age_key(meta: &ObjectMeta) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        namespace_of(meta),
        meta.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
