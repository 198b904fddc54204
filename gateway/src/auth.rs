//! Virtual-key authentication: find the presented key among the published SHA-256 hashes, in constant time.
//!
//! The presented key is hashed and the digest looked up in a map; the map's own comparison only ever sees
//! digests (learning a digest's prefix tells an attacker nothing about a key), and the final match is
//! confirmed with a constant-time comparison. Rejections say why (unknown, expired, disabled, rotated) but
//! never echo the key.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use sluice_crds::config::{KeyConfig, KeyHash};
use subtle::ConstantTimeEq;

use crate::error::KeyRejection;

/// SHA-256 digest of a key.
pub type KeyDigest = [u8; 32];

/// Which routes a key may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every route of the gateway.
    All,
    /// Only these route ids (resolved from the key's model names when the configuration was built).
    Routes(HashSet<Arc<str>>),
}

/// A virtual key as the hot path needs it.
#[derive(Debug)]
pub struct Key {
    /// `namespace/name` of the VirtualKey; safe for logs and (opt-in) metric labels.
    pub id: Arc<str>,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    pub disabled: bool,
    /// The compiled key, for later layers (rate limits, budgets, regions).
    pub config: KeyConfig,
}

impl Key {
    /// Whether the key may call the route with this id.
    pub fn may_use(&self, route_id: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Routes(routes) => routes.contains(route_id),
        }
    }
}

#[derive(Debug)]
struct Grant {
    digest: KeyDigest,
    key: Arc<Key>,
    /// Set on a previous value during its rotation grace period.
    not_after: Option<DateTime<Utc>>,
}

/// A published hash that could not be used; the key it belongs to keeps its other hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashProblem {
    pub key_id: String,
    pub problem: &'static str,
}

/// All accepted key digests.
#[derive(Debug, Default)]
pub struct KeyTable {
    grants: HashMap<KeyDigest, Grant>,
}

impl KeyTable {
    /// Builds the table from keys and their published hashes. Malformed hashes, hashes of unknown key ids
    /// and hashes claimed by two keys are left out (reported, never guessed at).
    pub fn build<'a>(
        keys: impl IntoIterator<Item = Arc<Key>>,
        hashes: impl IntoIterator<Item = (&'a String, &'a Vec<KeyHash>)>,
    ) -> (Self, Vec<HashProblem>) {
        let keys: HashMap<Arc<str>, Arc<Key>> =
            keys.into_iter().map(|key| (key.id.clone(), key)).collect();
        let mut grants: HashMap<KeyDigest, Grant> = HashMap::new();
        let mut duplicates: HashSet<KeyDigest> = HashSet::new();
        let mut problems = Vec::new();
        for (key_id, key_hashes) in hashes {
            let Some(key) = keys.get(key_id.as_str()) else {
                problems.push(HashProblem {
                    key_id: key_id.clone(),
                    problem: "hash published for a key that is not in the config",
                });
                continue;
            };
            for hash in key_hashes {
                let Some(digest) = parse_digest(&hash.sha256) else {
                    problems.push(HashProblem {
                        key_id: key_id.clone(),
                        problem: "hash is not 64 hex characters",
                    });
                    continue;
                };
                if grants.contains_key(&digest) || duplicates.contains(&digest) {
                    if let Some(other) = grants.remove(&digest) {
                        problems.push(HashProblem {
                            key_id: other.key.id.to_string(),
                            problem: "the same key value is used by two keys",
                        });
                    }
                    duplicates.insert(digest);
                    problems.push(HashProblem {
                        key_id: key_id.clone(),
                        problem: "the same key value is used by two keys",
                    });
                    continue;
                }
                grants.insert(
                    digest,
                    Grant {
                        digest,
                        key: key.clone(),
                        not_after: hash.not_after,
                    },
                );
            }
        }
        (Self { grants }, problems)
    }

    /// Number of accepted key values.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether no key value is accepted.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Checks a presented key at time `now`.
    pub fn authenticate(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Key>, KeyRejection> {
        let digest: KeyDigest = Sha256::digest(presented.as_bytes()).into();
        let grant = self.grants.get(&digest).ok_or(KeyRejection::Unknown)?;
        if !bool::from(grant.digest.ct_eq(&digest)) {
            return Err(KeyRejection::Unknown);
        }
        if grant.key.disabled {
            return Err(KeyRejection::Disabled);
        }
        if grant.key.expires_at.is_some_and(|expiry| now >= expiry) {
            return Err(KeyRejection::Expired);
        }
        if grant.not_after.is_some_and(|end| now >= end) {
            return Err(KeyRejection::Rotated);
        }
        Ok(grant.key.clone())
    }
}

fn parse_digest(hex_digest: &str) -> Option<KeyDigest> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(digest)
}

/// The key a request presents: `Authorization: Bearer <key>` first (OpenAI SDKs), then `x-api-key`
/// (Anthropic SDKs). `None` when neither carries a non-empty key.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty());
    bearer.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|key| !key.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use http::HeaderValue;
    use sluice_crds::config::hash_key;

    use super::*;

    fn key(id: &str, disabled: bool, expires_at: Option<DateTime<Utc>>) -> Arc<Key> {
        Arc::new(Key {
            id: id.into(),
            scope: Scope::All,
            expires_at,
            disabled,
            config: KeyConfig {
                id: id.into(),
                prefix: "sk-test".into(),
                models: vec![],
                denied_models: vec![],
                max_prompt_tokens: None,
                max_tokens: None,
                allowed_regions: vec![],
                rate_limit: None,
                budgets: vec![],
                expires_at,
                disabled,
            },
        })
    }

    fn hash(secret: &str, not_after: Option<DateTime<Utc>>) -> KeyHash {
        KeyHash {
            sha256: hash_key(secret),
            not_after,
        }
    }

    #[test]
    fn rejections_name_the_reason() {
        let now = Utc::now();
        let keys = vec![
            key("ns/live", false, None),
            key("ns/off", true, None),
            key("ns/old", false, Some(now - TimeDelta::seconds(1))),
            key("ns/rotating", false, None),
        ];
        let hashes = [
            ("ns/live".to_owned(), vec![hash("live-secret", None)]),
            ("ns/off".to_owned(), vec![hash("off-secret", None)]),
            ("ns/old".to_owned(), vec![hash("old-secret", None)]),
            (
                "ns/rotating".to_owned(),
                vec![
                    hash("new-secret", None),
                    hash("grace-secret", Some(now + TimeDelta::hours(1))),
                    hash("past-secret", Some(now - TimeDelta::seconds(1))),
                ],
            ),
        ];
        let (table, problems) = KeyTable::build(keys, hashes.iter().map(|(id, h)| (id, h)));
        assert!(problems.is_empty(), "{problems:?}");
        let id = |secret: &str| table.authenticate(secret, now).map(|k| k.id.to_string());
        assert_eq!(id("live-secret"), Ok("ns/live".into()));
        assert_eq!(id("new-secret"), Ok("ns/rotating".into()));
        assert_eq!(
            id("grace-secret"),
            Ok("ns/rotating".into()),
            "previous key works during its grace period"
        );
        assert_eq!(id("past-secret"), Err(KeyRejection::Rotated));
        assert_eq!(id("off-secret"), Err(KeyRejection::Disabled));
        assert_eq!(id("old-secret"), Err(KeyRejection::Expired));
        assert_eq!(id("nobody"), Err(KeyRejection::Unknown));
        assert_eq!(id(""), Err(KeyRejection::Unknown));
    }

    #[test]
    fn unusable_hashes_are_reported_and_left_out() {
        let keys = vec![key("ns/a", false, None), key("ns/b", false, None)];
        let hashes = [
            (
                "ns/a".to_owned(),
                vec![
                    hash("shared", None),
                    KeyHash {
                        sha256: "xyz".into(),
                        not_after: None,
                    },
                ],
            ),
            (
                "ns/b".to_owned(),
                vec![hash("shared", None), hash("b-only", None)],
            ),
            ("ns/ghost".to_owned(), vec![hash("ghost", None)]),
        ];
        let (table, problems) = KeyTable::build(keys, hashes.iter().map(|(id, h)| (id, h)));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.authenticate("shared", Utc::now()).err(),
            Some(KeyRejection::Unknown)
        );
        assert!(table.authenticate("b-only", Utc::now()).is_ok());
    }

    #[test]
    fn keys_are_read_from_bearer_then_x_api_key() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer sk-1")])),
            Some("sk-1")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  sk-1 ")])),
            Some("sk-1")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "sk-2")])),
            Some("sk-2")
        );
        assert_eq!(
            presented_key(&headers(&[
                ("authorization", "Basic abc"),
                ("x-api-key", "sk-2")
            ])),
            Some("sk-2")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer "), ("x-api-key", "")])),
            None
        );
        assert_eq!(presented_key(&headers(&[])), None);
    }
}
