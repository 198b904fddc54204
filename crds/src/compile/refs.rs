//! Resolution of references to Secrets and Budgets, with the reasons a reference can fail.

use std::collections::BTreeMap;

use super::problems::Problems;
use super::{Inputs, Problem, SecretStore, namespace_of};
use crate::conditions::reason;
use crate::config::{BudgetConfig, object_id};
use crate::v1alpha1::{BudgetRef, SecretKeyRef};

/// Reads the value of `reference`, made from a resource in `namespace`, as trimmed UTF-8 text.
///
/// Surrounding whitespace is dropped because `kubectl create secret --from-file` keeps the file's
/// trailing newline, which no provider accepts in a key.
pub(super) fn secret_value(
    secrets: &SecretStore,
    namespace: &str,
    field: &str,
    reference: &SecretKeyRef,
) -> Result<String, Problem> {
    let secret = match &reference.namespace {
        Some(other) if other != namespace => {
            return Err(Problem {
                reason: reason::REF_NOT_PERMITTED,
                message: format!(
                    "{field}: Secret {other}/{} is in another namespace; only Secrets in {namespace} may be referenced",
                    reference.name
                ),
            });
        }
        _ => object_id(namespace, &reference.name),
    };
    let data = secrets
        .get(namespace, &reference.name)
        .ok_or_else(|| Problem {
            reason: reason::SECRET_NOT_FOUND,
            message: format!("{field}: Secret {secret} not found"),
        })?;
    let bytes = data.get(&reference.key).ok_or_else(|| Problem {
        reason: reason::SECRET_KEY_NOT_FOUND,
        message: format!("{field}: Secret {secret} has no key {:?}", reference.key),
    })?;
    let invalid = |what: &str| Problem {
        reason: reason::INVALID,
        message: format!("{field}: key {:?} of Secret {secret} {what}", reference.key),
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| invalid("is not UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Err(invalid("is empty"));
    }
    Ok(text.to_owned())
}

/// What the compiler knows about each Budget a route or key may reference.
#[derive(Debug)]
pub(super) struct BudgetDirectory<'a> {
    /// Budgets of the gateway being compiled: whether each was accepted.
    own: &'a BTreeMap<String, Result<BudgetConfig, Problem>>,
    /// Budgets of other gateways by id, with their gateway, for a message that explains the miss.
    foreign: BTreeMap<String, &'a str>,
}

impl<'a> BudgetDirectory<'a> {
    pub(super) fn new(
        inputs: &Inputs<'a>,
        own: &'a BTreeMap<String, Result<BudgetConfig, Problem>>,
    ) -> Self {
        let foreign = inputs
            .budgets
            .iter()
            .filter(|b| b.spec.gateway != inputs.gateway)
            .map(|b| {
                (
                    object_id(
                        &namespace_of(&b.metadata),
                        b.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    b.spec.gateway.as_str(),
                )
            })
            .collect();
        Self { own, foreign }
    }

    /// Records a problem for each Budget in `refs` (made from `namespace`) that is missing, belongs to
    /// another gateway or was not accepted.
    pub(super) fn check(&self, namespace: &str, refs: &[BudgetRef], problems: &mut Problems) {
        for (i, reference) in refs.iter().enumerate() {
            if refs[..i]
                .iter()
                .any(|earlier| earlier.name == reference.name)
            {
                continue;
            }
            let field = format!("spec.budgetRefs[{i}]");
            let id = object_id(namespace, &reference.name);
            let message = match (self.own.get(&id), self.foreign.get(&id)) {
                (Some(Ok(_)), _) => continue,
                (Some(Err(problem)), _) => {
                    format!("{field}: Budget {id} is not accepted ({})", problem.message)
                }
                (None, Some(gateway)) => {
                    format!("{field}: Budget {id} belongs to gateway {gateway:?}, not this one")
                }
                (None, None) => format!("{field}: Budget {id} not found"),
            };
            problems.push(reason::BUDGET_NOT_FOUND, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SecretStore {
        let mut store = SecretStore::new();
        store.insert(
            "team-a",
            "keys",
            [
                ("openai".to_owned(), b"sk-123\n".to_vec()),
                ("blank".to_owned(), b"  \n".to_vec()),
                ("binary".to_owned(), vec![0xff, 0xfe]),
            ]
            .into(),
        );
        store
    }

    #[test]
    fn secret_refs_resolve_or_say_why_not() {
        let reference = |name: &str, key: &str, namespace: Option<&str>| SecretKeyRef {
            name: name.into(),
            key: key.into(),
            namespace: namespace.map(str::to_owned),
        };
        let cases = [
            (reference("keys", "openai", None), Ok("sk-123")),
            (reference("keys", "openai", Some("team-a")), Ok("sk-123")),
            (
                reference("keys", "openai", Some("team-b")),
                Err(reason::REF_NOT_PERMITTED),
            ),
            (
                reference("nope", "openai", None),
                Err(reason::SECRET_NOT_FOUND),
            ),
            (
                reference("keys", "anthropic", None),
                Err(reason::SECRET_KEY_NOT_FOUND),
            ),
            (reference("keys", "blank", None), Err(reason::INVALID)),
            (reference("keys", "binary", None), Err(reason::INVALID)),
        ];
        let store = store();
        for (reference, expected) in cases {
            let got = secret_value(&store, "team-a", "spec.ref", &reference);
            match (got, expected) {
                (Ok(value), Ok(want)) => assert_eq!(value, want),
                (Err(problem), Err(want)) => {
                    assert_eq!(problem.reason, want, "{reference:?}");
                    assert!(
                        problem.message.starts_with("spec.ref: "),
                        "{}",
                        problem.message
                    );
                    assert!(
                        !problem.message.contains("sk-123"),
                        "a message must not carry a secret"
                    );
                }
                (got, want) => panic!("{reference:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
