//! VirtualKey → [`KeyConfig`] and the SHA-256 hashes of its accepted values (current, and previous
//! during a rotation's grace period). Expired and disabled keys stay published so the gateway can say
//! why it refuses them instead of calling them unknown.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::common::{budget_ids, rate_limit};
use super::conflicts::{self, Claim};
use super::problems::{Problems, dedup};
use super::refs::{BudgetDirectory, secret_value};
use super::{Inputs, Kind, ObjectRef, Outcome, Problem, SecretData, age_key};
use crate::conditions::reason;
use crate::config::{KeyConfig, KeyHash, hash_key};
use crate::v1alpha1::{SecretKeyRef, VirtualKey, VirtualKeySpec};

/// Data key of the generated Secret that holds the current key.
pub const KEY_DATA_CURRENT: &str = "key";
/// Data key of the generated Secret that holds the key replaced by the last rotation.
pub const KEY_DATA_PREVIOUS: &str = "previous-key";
/// Data key (RFC 3339 time) after which the previous key stops working.
pub const KEY_DATA_PREVIOUS_EXPIRES_AT: &str = "previous-key-expires-at";
/// Prefix of every generated key, so a leaked key is recognisable (and secret scanners can match it).
pub const KEY_PREFIX: &str = "sk-sluice-";
/// Shortest accepted key: 32 characters of a random alphabet carry well over 128 bits.
pub const MIN_KEY_LENGTH: usize = 32;
/// Characters shown in status and logs for a generated key: the prefix plus four random characters,
/// enough to tell keys apart and far too few to guess the rest.
const DISPLAY_PREFIX_CHARS: usize = 14;
/// Suffix of the generated Secret's name.
const GENERATED_SECRET_SUFFIX: &str = "-sluice-key";
/// Longest Secret name the API server accepts.
const MAX_SECRET_NAME: usize = 253;

/// Name of the Secret the operator generates for a VirtualKey without `secretRef`.
pub fn generated_key_secret_name(virtual_key_name: &str) -> String {
    format!("{virtual_key_name}{GENERATED_SECRET_SUFFIX}")
}

/// The part of a key that may be shown: the first 14 characters of a generated key; of any other
/// (bring-your-own) key at most a quarter of it, so a short key does not lose a large share of its
/// secret to a status field.
pub fn key_display_prefix(key: &str) -> String {
    let chars = if key.starts_with(KEY_PREFIX) {
        DISPLAY_PREFIX_CHARS
    } else {
        (key.chars().count() / 4).min(DISPLAY_PREFIX_CHARS)
    };
    key.chars().take(chars).collect()
}

/// The values a key accepts.
#[derive(Debug)]
struct Material {
    current: String,
    /// The previous value and when it stops working, while that is in the future.
    previous: Option<(String, DateTime<Utc>)>,
}

/// What the gateway learns of a key's values: a display prefix and hashes, never the values.
#[derive(Debug)]
struct Published {
    prefix: String,
    hashes: Vec<KeyHash>,
}

impl Material {
    fn published(&self) -> Published {
        Published {
            prefix: key_display_prefix(&self.current),
            hashes: self.hashes(),
        }
    }

    fn hashes(&self) -> Vec<KeyHash> {
        let current = KeyHash {
            sha256: hash_key(&self.current),
            not_after: None,
        };
        let previous = self.previous.iter().map(|(key, until)| KeyHash {
            sha256: hash_key(key),
            not_after: Some(*until),
        });
        std::iter::once(current).chain(previous).collect()
    }
}

struct Candidate<'a> {
    key: &'a VirtualKey,
    object: ObjectRef,
    config: Result<KeyConfig, Problem>,
    values: Result<Published, Problem>,
}

/// Compiles the gateway's keys, records an outcome for each, and adds the hashes of the published
/// ones to `key_hashes`. Returns the published keys sorted by id.
pub(super) fn compile_all(
    inputs: &Inputs,
    budgets: &BudgetDirectory,
    outcomes: &mut BTreeMap<ObjectRef, Outcome>,
    key_hashes: &mut BTreeMap<String, Vec<KeyHash>>,
) -> Vec<KeyConfig> {
    let candidates: Vec<Candidate> = inputs
        .keys
        .iter()
        .filter(|key| key.spec.gateway == inputs.gateway)
        .map(|key| {
            let object = ObjectRef::of(Kind::VirtualKey, &key.metadata);
            let values = resolve_refs(inputs, budgets, &object, &key.spec);
            Candidate {
                config: compile_spec(&object, &key.spec),
                values: values.map(|material| material.published()),
                key,
                object,
            }
        })
        .collect();
    let duplicates = duplicate_values(&candidates);

    let mut keys = Vec::new();
    for (i, candidate) in candidates.into_iter().enumerate() {
        let values = match duplicates.get(&i) {
            Some(problem) => Err(problem.clone()),
            None => candidate.values,
        };
        let outcome = Outcome {
            accepted: candidate.config.as_ref().map(|_| ()).map_err(Clone::clone),
            resolved_refs: values.as_ref().map(|_| ()).map_err(Clone::clone),
        };
        if let (Ok(mut config), Ok(values)) = (candidate.config, values) {
            config.prefix = values.prefix;
            key_hashes.insert(config.id.clone(), values.hashes);
            keys.push(config);
        }
        outcomes.insert(candidate.object, outcome);
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys
}

/// Two keys with one value would make a hash name two callers: the older key keeps it.
fn duplicate_values(candidates: &[Candidate]) -> BTreeMap<usize, Problem> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].config.is_ok() && candidates[i].values.is_ok())
        .collect();
    let claims: Vec<Claim<_>> = eligible
        .iter()
        .map(|&i| Claim {
            age: age_key(&candidates[i].key.metadata),
            names: candidates[i]
                .values
                .as_ref()
                .map(|v| v.hashes.iter().map(|h| h.sha256.as_str()).collect())
                .unwrap_or_default(),
        })
        .collect();
    conflicts::resolve(&claims)
        .into_iter()
        .map(|(claim, lost)| {
            let winner = &candidates[eligible[lost.winner]].object;
            let message = format!(
                "the key value is already used by {winner}, which is older; every VirtualKey needs its own value"
            );
            (eligible[claim], Problem { reason: reason::INVALID, message })
        })
        .collect()
}

/// The spec as a [`KeyConfig`] (its display prefix is filled in once the value is known).
fn compile_spec(object: &ObjectRef, spec: &VirtualKeySpec) -> Result<KeyConfig, Problem> {
    let mut problems = Problems::new();
    if spec.secret_ref.is_none() && generated_key_secret_name(&object.name).len() > MAX_SECRET_NAME
    {
        problems.invalid(
            "metadata.name",
            format!(
                "is too long to name the generated Secret; use at most {} characters",
                MAX_SECRET_NAME - GENERATED_SECRET_SUFFIX.len()
            ),
        );
    }
    problems.names("spec.models", &spec.models, 256);
    problems.names("spec.allowedRegions", &spec.allowed_regions, 63);
    if let Some(rotation) = &spec.rotation {
        if spec.secret_ref.is_some() {
            problems.invalid(
                "spec.rotation",
                "applies to generated keys; rotate a bring-your-own key by updating its Secret",
            );
        }
        problems.at_least_u64("spec.rotation.generation", rotation.generation, 0);
        problems.duration_ms("spec.rotation.gracePeriod", &rotation.grace_period, false);
    }
    problems.names("spec.deniedModels", &spec.denied_models, 256);
    let caps = spec.guardrails.clone().unwrap_or_default();
    let config = KeyConfig {
        id: object.id(),
        prefix: String::new(),
        models: dedup(spec.models.iter().map(|m| m.trim().to_owned())),
        denied_models: dedup(spec.denied_models.iter().map(|m| m.trim().to_owned())),
        max_prompt_tokens: caps
            .max_prompt_tokens
            .map(|n| problems.at_least_u64("spec.guardrails.maxPromptTokens", n, 1)),
        max_tokens: caps
            .max_tokens
            .map(|n| problems.ranged_u32("spec.guardrails.maxTokens", n, 1, u32::MAX)),
        allowed_regions: dedup(spec.allowed_regions.iter().cloned()),
        rate_limit: spec
            .rate_limit
            .as_ref()
            .map(|limit| rate_limit("spec.rateLimit", limit, &mut problems)),
        budgets: budget_ids(&object.namespace, &spec.budget_refs),
        expires_at: spec
            .expires_at
            .as_ref()
            .and_then(|t| to_chrono("spec.expiresAt", t, &mut problems)),
        disabled: spec.disabled,
    };
    problems.into_result().map(|()| config)
}

/// The key's values, from its bring-your-own Secret or the generated one, after checking budgets.
fn resolve_refs(
    inputs: &Inputs,
    budgets: &BudgetDirectory,
    object: &ObjectRef,
    spec: &VirtualKeySpec,
) -> Result<Material, Problem> {
    let mut problems = Problems::new();
    let material = match &spec.secret_ref {
        Some(reference) => bring_your_own(inputs, object, reference),
        None => generated(inputs, object),
    };
    if let Err(problem) = &material {
        problems.push(problem.reason, problem.message.clone());
    }
    budgets.check(&object.namespace, &spec.budget_refs, &mut problems);
    problems.into_result().and(material)
}

fn bring_your_own(
    inputs: &Inputs,
    object: &ObjectRef,
    reference: &SecretKeyRef,
) -> Result<Material, Problem> {
    let current = secret_value(
        inputs.secrets,
        &object.namespace,
        "spec.secretRef",
        reference,
    )?;
    check_length("spec.secretRef", &current)?;
    Ok(Material {
        current,
        previous: None,
    })
}

fn generated(inputs: &Inputs, object: &ObjectRef) -> Result<Material, Problem> {
    let field = "generated key";
    let secret_name = generated_key_secret_name(&object.name);
    let reference = SecretKeyRef {
        name: secret_name.clone(),
        key: KEY_DATA_CURRENT.to_owned(),
        namespace: None,
    };
    let current = secret_value(inputs.secrets, &object.namespace, field, &reference).map_err(
        |mut problem| {
            if problem.reason == reason::SECRET_NOT_FOUND {
                problem.message.push_str(" yet; the operator creates it");
            }
            problem
        },
    )?;
    check_length(field, &current)?;
    let previous = inputs
        .secrets
        .get(&object.namespace, &secret_name)
        .and_then(|data| previous_key(data, inputs.now))
        .filter(|(previous, _)| *previous != current);
    Ok(Material { current, previous })
}

/// The previous key while its grace period runs. A missing or unreadable expiry ends it: a key
/// never works longer than the operator said.
fn previous_key(data: &SecretData, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
    let key = std::str::from_utf8(data.get(KEY_DATA_PREVIOUS)?)
        .ok()?
        .trim();
    let expires = std::str::from_utf8(data.get(KEY_DATA_PREVIOUS_EXPIRES_AT)?)
        .ok()?
        .trim();
    let expires = DateTime::parse_from_rfc3339(expires)
        .ok()?
        .with_timezone(&Utc);
    (expires > now && key.len() >= MIN_KEY_LENGTH).then(|| (key.to_owned(), expires))
}

fn check_length(field: &str, key: &str) -> Result<(), Problem> {
    if key.chars().count() < MIN_KEY_LENGTH {
        return Err(Problem {
            reason: reason::INVALID,
            message: format!("{field}: the key must be at least {MIN_KEY_LENGTH} characters long"),
        });
    }
    Ok(())
}

fn to_chrono(field: &str, time: &Time, problems: &mut Problems) -> Option<DateTime<Utc>> {
    let converted = i64::try_from(time.0.as_nanosecond())
        .ok()
        .map(DateTime::from_timestamp_nanos);
    if converted.is_none() {
        problems.invalid(field, "is out of range");
    }
    converted
}

#[cfg(test)]
mod tests;
