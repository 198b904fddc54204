//! The chart's life cycle on a real API server: `helm install` (CRDs included), `helm upgrade` that
//! changes a CRD, `helm rollback`, a second gateway beside the first, and `helm uninstall` that keeps
//! the CRDs and every custom resource.
//!
//! This binary has a control plane of its own because it installs and changes cluster-scoped CRDs.

mod chart_support;

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use serde_json::Value;
use sluice_tests::harness::{ControlPlane, TestNamespace};

use chart_support::{Helm, chart_dir, first_difference, numbers_as_f64, wait_established};

/// A field the upgraded chart adds to the Budget CRD's spec.
const NEW_FIELD: &str = "chartUpgradeProbe";

/// Copies the chart to `to`, adds [`NEW_FIELD`] to the Budget CRD and raises the chart version: a
/// release that changes a CRD.
fn chart_with_changed_crd(to: &Path) -> Result<()> {
    copy_dir(&chart_dir(), to)?;
    let crd_path = to.join("files/crds/sluice.dev_budgets.yaml");
    let mut crd: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&crd_path)?)?;
    let properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]
        .as_mapping_mut()
        .context("the Budget CRD has no spec properties")?;
    let field: serde_yaml::Value =
        serde_yaml::from_str("{type: string, description: Added by the upgrade test.}")?;
    properties.insert(NEW_FIELD.into(), field);
    std::fs::write(&crd_path, serde_yaml::to_string(&crd)?)?;
    let chart_yaml = to.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml)?;
    let raised = text
        .lines()
        .map(|line| {
            if line.starts_with("version:") {
                "version: 0.1.1-upgrade-test"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&chart_yaml, raised + "\n")?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The Budget CRD's served spec properties.
async fn budget_spec_properties(client: &Client) -> Result<Vec<String>> {
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("budgets.sluice.dev")
        .await?;
    let schema = serde_json::to_value(&crd.spec.versions[0].schema)?;
    Ok(
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect(),
    )
}

/// A Budget that sets [`NEW_FIELD`].
fn budget_with_new_field(namespace: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata:\n  name: probe\n  namespace: {namespace}\nspec:\n  limitUSD: 10\n  {NEW_FIELD}: kept\n"
    )
}

#[tokio::test]
async fn install_upgrade_with_a_crd_change_rollback_and_uninstall() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    if control_plane.is_existing_cluster() {
        // This test installs and changes cluster-scoped CRDs; on a shared cluster it would fight the
        // release the cluster runs (and `scripts/kind-e2e.sh` installs the chart itself).
        eprintln!(
            "skipped on an existing cluster: it installs and changes the cluster's Sluice CRDs"
        );
        return Ok(());
    }
    let client = control_plane.admin_client().await?;
    let helm = Helm::new(control_plane)?;
    let kubectl = control_plane.kubectl();
    let namespace = TestNamespace::new(&client, "chart-install").await?;
    let ns = namespace.name();
    let chart = chart_dir();
    let chart = chart.to_str().context("path")?;

    // Install: no --wait, because nothing runs pods here.
    helm.run_ok(["install", "sluice", chart, "--namespace", ns])?;
    for name in [
        "llmroutes.sluice.dev",
        "virtualkeys.sluice.dev",
        "budgets.sluice.dev",
    ] {
        wait_established(&client, name).await?;
    }
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for (_, generated) in sluice_crds::crdgen::all() {
        let name = generated
            .metadata
            .name
            .clone()
            .context("generated CRD without name")?;
        // What the CRD defines; the API server adds defaults of its own (e.g. `conversion`) around it.
        let served = numbers_as_f64(serde_json::to_value(crds.get(&name).await?.spec.versions)?);
        let expected = numbers_as_f64(serde_json::to_value(&generated.spec.versions)?);
        if let Some(difference) = first_difference(&served, &expected) {
            bail!("the served {name} is not the generated CRD: versions{difference}");
        }
    }
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    for name in ["sluice-operator", "sluice-gateway"] {
        ensure!(
            deployments.get_opt(name).await?.is_some(),
            "deployment {name} was not installed"
        );
    }
    let status = helm.run_ok(["status", "sluice", "--namespace", ns])?;
    ensure!(
        status.contains("STATUS: deployed"),
        "helm status:\n{status}"
    );

    // Before the upgrade the API server rejects the field; the Budget is created without it.
    let rejected = kubectl.run(
        [
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&budget_with_new_field(ns)),
    )?;
    ensure!(
        !rejected.success && rejected.stderr.contains(NEW_FIELD),
        "the field should be unknown before the upgrade: {}",
        rejected.stderr
    );

    // Upgrade with a changed CRD: Helm never upgrades a crds/ directory, but the chart's CRDs are
    // templates, so the new schema is served.
    let changed = tempfile::tempdir()?;
    chart_with_changed_crd(changed.path())?;
    helm.run_ok([
        "upgrade",
        "sluice",
        changed.path().to_str().context("path")?,
        "--namespace",
        ns,
    ])?;
    wait_established(&client, "budgets.sluice.dev").await?;
    ensure!(
        budget_spec_properties(&client)
            .await?
            .iter()
            .any(|p| p == NEW_FIELD),
        "the upgraded CRD does not serve {NEW_FIELD}"
    );
    kubectl.run_ok(
        [
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&budget_with_new_field(ns)),
    )?;
    let stored = kubectl.run_ok(
        [
            "get",
            "budget",
            "probe",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.chartUpgradeProbe}",
        ],
        None,
    )?;
    ensure!(stored == "kept", "the new field was pruned: {stored:?}");

    // Roll back: the previous schema is served again.
    helm.run_ok(["rollback", "sluice", "1", "--namespace", ns])?;
    ensure!(
        !budget_spec_properties(&client)
            .await?
            .iter()
            .any(|p| p == NEW_FIELD),
        "the rollback did not restore the CRD"
    );

    // A second gateway in another namespace: same cluster, CRDs owned by the first release.
    let staging = TestNamespace::new(&client, "chart-install-staging").await?;
    helm.run_ok([
        "install",
        "sluice-staging",
        chart,
        "--namespace",
        staging.name(),
        "--set",
        "crds.enabled=false",
        "--set",
        "gateway.name=staging",
    ])?;
    ensure!(
        Api::<Deployment>::namespaced(client.clone(), staging.name())
            .get_opt("sluice-staging-gateway")
            .await?
            .is_some(),
        "the second gateway was not installed"
    );
    ensure!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt("sluice-staging-operator")
            .await?
            .is_some(),
        "the second operator has no ClusterRole of its own"
    );

    // Uninstall: the release's objects go, the CRDs and custom resources stay.
    helm.run_ok(["uninstall", "sluice", "--namespace", ns])?;
    ensure!(
        deployments.get_opt("sluice-operator").await?.is_none(),
        "uninstall left the operator"
    );
    ensure!(
        Api::<Service>::namespaced(client.clone(), ns)
            .get_opt("sluice-gateway")
            .await?
            .is_none(),
        "uninstall left the gateway Service"
    );
    ensure!(
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_opt("sluice-operator")
            .await?
            .is_none(),
        "uninstall left a ServiceAccount"
    );
    ensure!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt("sluice-operator")
            .await?
            .is_none(),
        "uninstall left the ClusterRole"
    );
    for name in [
        "llmroutes.sluice.dev",
        "virtualkeys.sluice.dev",
        "budgets.sluice.dev",
    ] {
        let crd = crds
            .get_opt(name)
            .await?
            .with_context(|| format!("uninstall deleted CRD {name}"))?;
        ensure!(
            crd.metadata.deletion_timestamp.is_none(),
            "CRD {name} is being deleted"
        );
    }
    let budget = kubectl.run_ok(["get", "budget", "probe", "-n", ns, "-o", "json"], None)?;
    let budget: Value = serde_json::from_str(&budget)?;
    ensure!(
        budget["spec"]["limitUSD"] == 10,
        "the Budget did not survive the uninstall: {budget}"
    );

    // Reinstalling adopts the kept CRDs.
    helm.run_ok(["install", "sluice", chart, "--namespace", ns])?;
    helm.run_ok(["uninstall", "sluice-staging", "--namespace", staging.name()])?;
    Ok(())
}
