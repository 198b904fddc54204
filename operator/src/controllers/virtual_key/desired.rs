//! Pure decisions about a generated key's Secret: issue a first key, rotate, drop the previous key after
//! its grace period, or leave it alone; and the Secret object that results.
//!
//! An existing key is never replaced except by a rotation the user asked for. The rotation generation
//! the current key was issued for is recorded on the Secret itself (an annotation), so a crash between
//! writing the Secret and writing status can never rotate twice.

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource as _, ResourceExt as _};
use sluice_crds::compile::{
    KEY_DATA_CURRENT, KEY_DATA_PREVIOUS, KEY_DATA_PREVIOUS_EXPIRES_AT, SecretData,
    generated_key_secret_name,
};
use sluice_crds::v1alpha1::{VirtualKey, VirtualKeySpec};

use crate::stores::{MANAGED_BY_LABEL, MANAGER};

/// Annotation on a generated key Secret: the `spec.rotation.generation` its current key was issued for.
pub const ROTATION_GENERATION_ANNOTATION: &str = "sluice.dev/rotation-generation";
/// Label on a generated key Secret naming its VirtualKey.
pub const VIRTUAL_KEY_LABEL: &str = "sluice.dev/virtual-key";

/// What the generated Secret holds, as far as the decision needs it (never the key values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    pub has_key: bool,
    pub rotation_generation: i64,
    pub has_previous: bool,
    pub previous_expires_at: Option<DateTime<Utc>>,
}

impl KeyState {
    /// Reads the state of a generated key Secret.
    pub fn of(secret: &Secret) -> Self {
        let data = sluice_crds::compile::secret_data(secret);
        Self {
            has_key: data
                .get(KEY_DATA_CURRENT)
                .is_some_and(|value| !value.is_empty()),
            rotation_generation: secret
                .annotations()
                .get(ROTATION_GENERATION_ANNOTATION)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            has_previous: data.contains_key(KEY_DATA_PREVIOUS),
            previous_expires_at: previous_expires_at(&data),
        }
    }
}

/// When the previous key of a generated Secret's data stops working, if it has one.
pub fn previous_expires_at(data: &SecretData) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(data.get(KEY_DATA_PREVIOUS_EXPIRES_AT)?).ok()?;
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// What to do with a generated key Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing to do.
    Keep,
    /// There is no key yet: issue the first one.
    Issue { generation: i64 },
    /// The user raised `spec.rotation.generation`: issue a new key; the current one keeps working
    /// until `previous_expires_at`.
    Rotate {
        generation: i64,
        previous_expires_at: DateTime<Utc>,
    },
    /// The grace period of the previous key is over: remove it.
    DropPrevious,
}

/// Decides what to do for a key without `secretRef`, given its Secret's state (`None`: no Secret).
pub fn plan(spec: &VirtualKeySpec, state: Option<&KeyState>, now: DateTime<Utc>) -> KeyAction {
    let wanted = spec
        .rotation
        .as_ref()
        .map_or(0, |rotation| rotation.generation);
    let Some(state) = state.filter(|state| state.has_key) else {
        return KeyAction::Issue { generation: wanted };
    };
    if wanted > state.rotation_generation {
        let grace = spec
            .rotation
            .as_ref()
            .and_then(|rotation| sluice_crds::duration::parse(&rotation.grace_period).ok())
            .and_then(|grace| chrono::Duration::from_std(grace).ok());
        // The schema only admits valid durations; should one slip through, rotating without a grace
        // period would cut off callers, so wait for a valid spec instead.
        return match grace {
            Some(grace) => KeyAction::Rotate {
                generation: wanted,
                previous_expires_at: now + grace,
            },
            None => KeyAction::Keep,
        };
    }
    if state.has_previous
        && state
            .previous_expires_at
            .is_none_or(|expires| expires <= now)
    {
        return KeyAction::DropPrevious;
    }
    KeyAction::Keep
}

/// The Secret data after `action`, from the current data and a freshly generated key (used by
/// `Issue` and `Rotate` only).
pub fn next_data(action: &KeyAction, current: &SecretData, new_key: &str) -> SecretData {
    let mut data = current.clone();
    match action {
        KeyAction::Keep => {}
        KeyAction::Issue { .. } => {
            data.insert(KEY_DATA_CURRENT.to_owned(), new_key.as_bytes().to_vec());
            data.remove(KEY_DATA_PREVIOUS);
            data.remove(KEY_DATA_PREVIOUS_EXPIRES_AT);
        }
        KeyAction::Rotate {
            previous_expires_at,
            ..
        } => {
            if let Some(old) = current.get(KEY_DATA_CURRENT) {
                data.insert(KEY_DATA_PREVIOUS.to_owned(), old.clone());
                data.insert(
                    KEY_DATA_PREVIOUS_EXPIRES_AT.to_owned(),
                    previous_expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        .into_bytes(),
                );
            }
            data.insert(KEY_DATA_CURRENT.to_owned(), new_key.as_bytes().to_vec());
        }
        KeyAction::DropPrevious => {
            data.remove(KEY_DATA_PREVIOUS);
            data.remove(KEY_DATA_PREVIOUS_EXPIRES_AT);
        }
    }
    data
}

/// The rotation generation to record after `action` (the recorded one when nothing is issued).
pub fn recorded_generation(action: &KeyAction, recorded: i64) -> i64 {
    match action {
        KeyAction::Issue { generation } | KeyAction::Rotate { generation, .. } => *generation,
        KeyAction::Keep | KeyAction::DropPrevious => recorded,
    }
}

/// The generated key Secret of `key` with `data`, owned by the VirtualKey (so it goes when the key
/// goes), starting from `existing` to keep what others set on it.
pub fn key_secret(
    key: &VirtualKey,
    existing: Option<&Secret>,
    data: SecretData,
    generation: i64,
) -> Secret {
    let mut secret = existing.cloned().unwrap_or_else(|| Secret {
        metadata: ObjectMeta {
            name: Some(generated_key_secret_name(&key.name_any())),
            namespace: key.namespace(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    });
    let labels = secret.labels_mut();
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    labels.insert(VIRTUAL_KEY_LABEL.to_owned(), key.name_any());
    secret.annotations_mut().insert(
        ROTATION_GENERATION_ANNOTATION.to_owned(),
        generation.to_string(),
    );
    if let Some(owner) = key.controller_owner_ref(&()) {
        let owners = secret.owner_references_mut();
        if !owners.iter().any(|existing| existing.uid == owner.uid) {
            // A Secret has at most one controller; ours replaces a stale one (a deleted namesake).
            owners.retain(|existing| existing.controller != Some(true));
            owners.push(owner);
        }
    }
    secret.data = Some(
        data.into_iter()
            .map(|(key, value)| (key, ByteString(value)))
            .collect(),
    );
    secret.string_data = None;
    secret
}

/// The facts about a key that its status shows: never the key, only its display prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFacts {
    pub secret_name: Option<String>,
    pub key_prefix: Option<String>,
    pub rotation_generation: Option<i64>,
    pub previous_key_expires_at: Option<DateTime<Utc>>,
}

/// Facts about a generated key from its Secret's data and recorded generation.
pub fn generated_facts(secret_name: String, data: &SecretData, generation: i64) -> KeyFacts {
    KeyFacts {
        secret_name: Some(secret_name),
        key_prefix: display_prefix(data, KEY_DATA_CURRENT),
        rotation_generation: Some(generation),
        previous_key_expires_at: data
            .contains_key(KEY_DATA_PREVIOUS)
            .then(|| previous_expires_at(data))
            .flatten(),
    }
}

/// The display prefix of the value under `key`, if it is non-empty text.
pub fn display_prefix(data: &SecretData, key: &str) -> Option<String> {
    let value = std::str::from_utf8(data.get(key)?).ok()?.trim();
    (!value.is_empty()).then(|| sluice_crds::compile::key_display_prefix(value))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use sluice_crds::v1alpha1::KeyRotation;

    use super::*;

    fn data_map(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0)
            .single()
            .expect("time")
    }

    fn spec(rotation: Option<(i64, &str)>) -> VirtualKeySpec {
        let mut spec: VirtualKeySpec =
            serde_json::from_value(serde_json::json!({})).expect("an empty spec deserializes");
        spec.rotation = rotation.map(|(generation, grace)| KeyRotation {
            generation,
            grace_period: grace.to_owned(),
        });
        spec
    }

    fn state(generation: i64, previous: Option<Option<DateTime<Utc>>>) -> KeyState {
        KeyState {
            has_key: true,
            rotation_generation: generation,
            has_previous: previous.is_some(),
            previous_expires_at: previous.flatten(),
        }
    }

    #[test]
    fn decisions_follow_the_secret_and_the_rotation_generation() {
        let hour = chrono::Duration::hours(1);
        let cases = [
            (
                "no Secret issues a key",
                spec(None),
                None,
                KeyAction::Issue { generation: 0 },
            ),
            (
                "a Secret without key issues one",
                spec(None),
                Some(KeyState::default()),
                KeyAction::Issue { generation: 0 },
            ),
            (
                "first key records the requested generation",
                spec(Some((3, "1h"))),
                None,
                KeyAction::Issue { generation: 3 },
            ),
            (
                "an existing key is kept",
                spec(None),
                Some(state(0, None)),
                KeyAction::Keep,
            ),
            (
                "the same generation is kept",
                spec(Some((2, "1h"))),
                Some(state(2, None)),
                KeyAction::Keep,
            ),
            (
                "a higher generation rotates with the grace period",
                spec(Some((3, "1h"))),
                Some(state(2, None)),
                KeyAction::Rotate {
                    generation: 3,
                    previous_expires_at: now() + hour,
                },
            ),
            (
                "a previous key in its grace period stays",
                spec(Some((3, "1h"))),
                Some(state(3, Some(Some(now() + hour)))),
                KeyAction::Keep,
            ),
            (
                "an expired previous key is dropped",
                spec(Some((3, "1h"))),
                Some(state(3, Some(Some(now())))),
                KeyAction::DropPrevious,
            ),
            (
                "a previous key without expiry is dropped",
                spec(None),
                Some(state(0, Some(None))),
                KeyAction::DropPrevious,
            ),
            (
                "a rotation wins over dropping",
                spec(Some((4, "30m"))),
                Some(state(3, Some(Some(now())))),
                KeyAction::Rotate {
                    generation: 4,
                    previous_expires_at: now() + chrono::Duration::minutes(30),
                },
            ),
        ];
        for (name, spec, state, expected) in cases {
            assert_eq!(plan(&spec, state.as_ref(), now()), expected, "{name}");
        }
    }

    #[test]
    fn rotation_moves_the_current_key_and_drop_removes_it() {
        let current = data_map(&[(KEY_DATA_CURRENT, "sk-sluice-old")]);
        let expires = now() + chrono::Duration::hours(24);
        let rotated = next_data(
            &KeyAction::Rotate {
                generation: 1,
                previous_expires_at: expires,
            },
            &current,
            "sk-sluice-new",
        );
        assert_eq!(rotated[KEY_DATA_CURRENT], b"sk-sluice-new");
        assert_eq!(rotated[KEY_DATA_PREVIOUS], b"sk-sluice-old");
        assert_eq!(previous_expires_at(&rotated), Some(expires));
        let dropped = next_data(&KeyAction::DropPrevious, &rotated, "unused");
        assert_eq!(dropped, data_map(&[(KEY_DATA_CURRENT, "sk-sluice-new")]));
        assert_eq!(next_data(&KeyAction::Keep, &current, "unused"), current);
    }

    #[test]
    fn facts_show_the_prefix_never_the_key() {
        let key = "sk-sluice-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefg";
        let facts = generated_facts(
            "k-sluice-key".into(),
            &data_map(&[(KEY_DATA_CURRENT, key)]),
            2,
        );
        let prefix = facts.key_prefix.expect("prefix");
        assert!(key.starts_with(&prefix) && prefix.len() < 20, "{prefix}");
        assert_eq!(facts.rotation_generation, Some(2));
        assert_eq!(facts.previous_key_expires_at, None);
    }

    #[test]
    fn the_key_secret_is_owned_by_its_virtual_key_and_records_the_generation() {
        let mut key = VirtualKey::new("team-key", spec(None));
        key.metadata.namespace = Some("team-a".into());
        key.metadata.uid = Some("uid-1".into());
        let secret = key_secret(
            &key,
            None,
            data_map(&[(KEY_DATA_CURRENT, "sk-sluice-x")]),
            5,
        );
        assert_eq!(secret.metadata.name.as_deref(), Some("team-key-sluice-key"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &secret.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("VirtualKey", "uid-1", Some(true))
        );
        assert_eq!(secret.annotations()[ROTATION_GENERATION_ANNOTATION], "5");
        assert_eq!(
            KeyState::of(&secret),
            KeyState {
                has_key: true,
                rotation_generation: 5,
                ..KeyState::default()
            }
        );
    }
}
