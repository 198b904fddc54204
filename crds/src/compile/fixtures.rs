//! Test fixtures: resources written as the YAML a user would apply, and Secrets.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;

use super::{Compiled, Inputs, Kind, ObjectRef, Outcome, SecretData, SecretStore, compile};
use crate::v1alpha1::{Budget, LLMRoute, VirtualKey};

pub(crate) fn route(namespace: &str, name: &str, spec: &str) -> LLMRoute {
    let mut route = LLMRoute::new(name, serde_yaml::from_str(spec).expect("route spec"));
    route.metadata.namespace = Some(namespace.into());
    route
}

pub(crate) fn key(namespace: &str, name: &str, spec: &str) -> VirtualKey {
    let mut key = VirtualKey::new(name, serde_yaml::from_str(spec).expect("key spec"));
    key.metadata.namespace = Some(namespace.into());
    key
}

pub(crate) fn budget(namespace: &str, name: &str, spec: &str) -> Budget {
    let mut budget = Budget::new(name, serde_yaml::from_str(spec).expect("budget spec"));
    budget.metadata.namespace = Some(namespace.into());
    budget
}

/// Sets the creation time to `second` seconds after the epoch.
pub(crate) fn created<K: Resource>(mut object: K, second: i64) -> K {
    let timestamp = k8s_openapi::jiff::Timestamp::from_second(second).expect("timestamp");
    object.meta_mut().creation_timestamp = Some(Time(timestamp));
    object
}

pub(crate) fn data(entries: &[(&str, &str)]) -> SecretData {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// A key value of the generated form, distinct per `seed`.
pub(crate) fn key_value(seed: &str) -> String {
    format!("{}{}", super::KEY_PREFIX, crate::config::hash_key(seed))
}

/// The same fixed moment for every test.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

/// The inputs of one compilation, owned.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub routes: Vec<LLMRoute>,
    pub keys: Vec<VirtualKey>,
    pub budgets: Vec<Budget>,
    pub secrets: SecretStore,
}

impl World {
    pub(crate) fn compile(&self, gateway: &str) -> Compiled {
        compile(&Inputs {
            gateway,
            routes: &self.routes,
            keys: &self.keys,
            budgets: &self.budgets,
            secrets: &self.secrets,
            now: now(),
        })
    }
}

impl Compiled {
    pub(crate) fn outcome(&self, kind: Kind, namespace: &str, name: &str) -> &Outcome {
        let object = ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        };
        self.outcomes
            .get(&object)
            .unwrap_or_else(|| panic!("no outcome for {object}"))
    }

    pub(crate) fn route_ids(&self) -> Vec<&str> {
        self.snapshot
            .config
            .routes
            .iter()
            .map(|r| r.id.as_str())
            .collect()
    }

    pub(crate) fn key_ids(&self) -> Vec<&str> {
        self.snapshot
            .config
            .keys
            .iter()
            .map(|k| k.id.as_str())
            .collect()
    }
}
