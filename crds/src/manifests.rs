//! Reads a folder of Kubernetes manifests (LLMRoute, VirtualKey, Budget and Secret documents) without
//! a cluster, for the gateway's local mode and the demo.
//!
//! Like `kubectl apply -f DIR` (without `-R`), a folder is read one level deep: every `*.yaml` and
//! `*.yml` file, in name order, hidden files skipped, each possibly holding several documents and
//! `v1/List`s. Documents are decoded through the API types, so the CRD schema's defaults apply, and
//! strictly: an unknown field is an error, as with `kubectl apply`'s default server-side field
//! validation. A missing namespace means `default`. Other kinds (a Namespace, a Deployment) are
//! skipped with a warning, so a folder written for a cluster also works locally.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::compile::{Inputs, SecretStore};
use crate::v1alpha1::{Budget, LLMRoute, VirtualKey};

/// Namespace of a document that names none, as `kubectl` assumes without a context namespace.
pub const DEFAULT_NAMESPACE: &str = "default";
/// `apiVersion` of the Sluice kinds.
const SLUICE_API_VERSION: &str = "sluice.dev/v1alpha1";

/// Everything read from a folder.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub routes: Vec<LLMRoute>,
    pub keys: Vec<VirtualKey>,
    pub budgets: Vec<Budget>,
    pub secrets: SecretStore,
    /// One line per skipped document, for the caller to log.
    pub warnings: Vec<String>,
}

impl Manifests {
    /// The compiler's view of these manifests.
    pub fn inputs<'a>(&'a self, gateway: &'a str, now: DateTime<Utc>) -> Inputs<'a> {
        Inputs {
            gateway,
            routes: &self.routes,
            keys: &self.keys,
            budgets: &self.budgets,
            secrets: &self.secrets,
            now,
        }
    }
}

/// Where a document came from: file, document number (from 1) and item number within a `List`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.path.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// Why a folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: not valid YAML: {source}")]
    ParseYaml {
        at: Location,
        source: serde_yaml::Error,
    },
    #[error("{at}: {message}")]
    BadDocument { at: Location, message: String },
    /// `object` is the kind and name, e.g. `LLMRoute chat`.
    #[error("{at} ({object}): {}", describe(source))]
    DecodeObject {
        at: Location,
        object: String,
        source: Box<serde_path_to_error::Error<serde_yaml::Error>>,
    },
    #[error("{at} ({object}): unknown field {field}")]
    UnknownField {
        at: Location,
        object: String,
        field: String,
    },
    /// `object` is the kind and namespaced name, e.g. `LLMRoute default/chat`.
    #[error("{object} is defined twice: at {first} and at {second}")]
    Duplicate {
        object: String,
        first: Box<Location>,
        second: Box<Location>,
    },
}

/// `path: problem`, without repeating the path when the YAML error already starts with it.
fn describe(error: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.inner().to_string();
    match inner
        .strip_prefix(&path)
        .and_then(|rest| rest.strip_prefix(": "))
    {
        Some(rest) => format!("{path}: {rest}"),
        None => format!("{path}: {inner}"),
    }
}

/// Reads every manifest file directly inside `dir`.
pub fn load_dir(dir: &Path) -> Result<Manifests, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::ReadDir {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if is_manifest_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    load_files(&files)
}

/// Reads the given manifest files, in order.
pub fn load_files(files: &[PathBuf]) -> Result<Manifests, Error> {
    let mut loader = Loader::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        loader.add_text(path, &text)?;
    }
    Ok(loader.finish())
}

/// Reads manifests from text; `source` names it in messages.
pub fn parse_str(source: &Path, text: &str) -> Result<Manifests, Error> {
    let mut loader = Loader::default();
    loader.add_text(source, text)?;
    Ok(loader.finish())
}

fn is_manifest_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let yaml = path
        .extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml");
    yaml && !name.starts_with('.') && path.is_file()
}

#[derive(Default)]
struct Loader {
    manifests: Manifests,
    seen: BTreeMap<(String, String, String), Location>,
}

impl Loader {
    fn add_text(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = Location {
                path: path.to_owned(),
                document: i + 1,
                item: None,
            };
            let value = Value::deserialize(document).map_err(|source| Error::ParseYaml {
                at: at.clone(),
                source,
            })?;
            self.add_value(at, value)?;
        }
        Ok(())
    }

    fn add_value(&mut self, at: Location, value: Value) -> Result<(), Error> {
        if value.is_null() {
            return Ok(()); // An empty document, e.g. after a trailing `---`.
        }
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
        let bad = |message: String| Error::BadDocument {
            at: at.clone(),
            message,
        };
        let api_version = text("apiVersion").ok_or_else(|| bad("apiVersion is missing".into()))?;
        let kind = text("kind").ok_or_else(|| bad("kind is missing".into()))?;
        let expected = match kind.as_str() {
            "LLMRoute" | "VirtualKey" | "Budget" => SLUICE_API_VERSION,
            "Secret" | "List" => "v1",
            _ => {
                let name = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                self.manifests.warnings.push(format!(
                    "{at}: skipped {api_version} {kind} {name} (only LLMRoute, VirtualKey, Budget and Secret are read)"
                ));
                return Ok(());
            }
        };
        if api_version != expected {
            return Err(bad(format!(
                "{kind} has apiVersion {api_version}; this version of Sluice reads {expected}"
            )));
        }
        match kind.as_str() {
            "LLMRoute" => {
                let route = self.decode::<LLMRoute>(&at, &kind, value)?;
                self.manifests.routes.push(route);
            }
            "VirtualKey" => {
                let key = self.decode::<VirtualKey>(&at, &kind, value)?;
                self.manifests.keys.push(key);
            }
            "Budget" => {
                let budget = self.decode::<Budget>(&at, &kind, value)?;
                self.manifests.budgets.push(budget);
            }
            "Secret" => {
                let secret = self.decode::<Secret>(&at, &kind, value)?;
                self.manifests.secrets.insert_secret(&secret);
            }
            _ => {
                let items = value
                    .get("items")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                for (i, item) in items.into_iter().enumerate() {
                    self.add_value(
                        Location {
                            item: Some(i + 1),
                            ..at.clone()
                        },
                        item,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Decodes one object strictly, defaults its namespace and refuses a second object of the same
    /// kind, namespace and name.
    fn decode<K: Resource + DeserializeOwned>(
        &mut self,
        at: &Location,
        kind: &str,
        value: Value,
    ) -> Result<K, Error> {
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if name.is_empty() {
            return Err(Error::BadDocument {
                at: at.clone(),
                message: format!("{kind} has no metadata.name"),
            });
        }
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let deserializer = serde_ignored::Deserializer::new(value, &mut record);
        let decoded: Result<K, _> = serde_path_to_error::deserialize(deserializer);
        let mut object = decoded.map_err(|source| Error::DecodeObject {
            at: at.clone(),
            object: format!("{kind} {name}"),
            source: Box::new(source),
        })?;
        // The CRD types take their apiVersion and kind from the type, not the document (both were
        // checked above), so only those two may go unread.
        if let Some(field) = unknown
            .into_iter()
            .find(|field| field != "apiVersion" && field != "kind")
        {
            return Err(Error::UnknownField {
                at: at.clone(),
                object: format!("{kind} {name}"),
                field,
            });
        }
        let namespace = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        object.meta_mut().namespace = Some(namespace.clone());
        let identity = (kind.to_owned(), namespace, name);
        if let Some(first) = self.seen.get(&identity) {
            return Err(Error::Duplicate {
                object: format!(
                    "{kind} {}",
                    crate::config::object_id(&identity.1, &identity.2)
                ),
                first: Box::new(first.clone()),
                second: Box::new(at.clone()),
            });
        }
        self.seen.insert(identity, at.clone());
        Ok(object)
    }

    fn finish(self) -> Manifests {
        self.manifests
    }
}

#[cfg(test)]
mod tests;
