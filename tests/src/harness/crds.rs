//! Installs the generated Sluice CRDs (server-side apply) and waits until they are Established.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize as _;
use tokio::sync::OnceCell;

use super::binaries::repo_root;
use super::wait::wait_for;

/// Field manager for everything the harness applies.
pub const FIELD_MANAGER: &str = "sluice-tests";
/// Establishing a CRD takes well under a second; allow for a loaded machine.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// The CRD manifests, `crds/generated/*.yaml`, sorted by file name.
pub fn crd_manifest_files() -> Result<Vec<PathBuf>> {
    let dir = repo_root().join("crds").join("generated");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        if path
            .extension()
            .is_some_and(|extension| extension == "yaml" || extension == "yml")
        {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no CRD manifests in {}", dir.display());
    }
    Ok(files)
}

/// Every CRD in `crds/generated/`, parsed (a file may hold several documents).
pub fn generated_crds() -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for path in crd_manifest_files()? {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document)
                .with_context(|| format!("parse {}", path.display()))?;
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_yaml::from_value(value)
                .with_context(|| format!("{} is not a CustomResourceDefinition", path.display()))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

/// Server-side applies one namespaced object given as JSON (`metadata.name` and `metadata.namespace`
/// required) with the tests' field manager, taking ownership of conflicting fields.
pub async fn server_side_apply<K>(client: &Client, manifest: serde_json::Value) -> Result<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let namespace = manifest["metadata"]["namespace"]
        .as_str()
        .context("namespace")?
        .to_owned();
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_owned();
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&manifest),
        )
        .await
        .with_context(|| format!("apply {namespace}/{name}"))
}

/// Applies every generated CRD and waits until each is `Established`.
/// Runs once per process; later calls return at once.
pub async fn install_crds(client: &Client) -> Result<()> {
    INSTALLED
        .get_or_try_init(|| apply_and_wait(client))
        .await
        .map(|_| ())
}

async fn apply_and_wait(client: &Client) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let crds = generated_crds()?;
    for crd in &crds {
        let name = crd
            .metadata
            .name
            .as_deref()
            .context("a generated CRD has no name")?;
        api.patch(name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("apply CRD {name}"))?;
    }
    for crd in &crds {
        let name = crd
            .metadata
            .name
            .as_deref()
            .context("a generated CRD has no name")?;
        wait_for(
            &format!("CRD {name} to be Established"),
            ESTABLISHED_TIMEOUT,
            || async {
                let current = api.get(name).await?;
                let established = current
                    .status
                    .and_then(|status| status.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|condition| {
                        condition.type_ == "Established" && condition.status == "True"
                    });
                Ok(established.then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}
