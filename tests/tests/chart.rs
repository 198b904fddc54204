//! The Helm chart as users meet it: lint, render, server-side dry-run against a real API server, the
//! values schema, secure defaults, the CRD copy, NOTES.txt and the GitOps examples.

mod chart_support;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser as _;
use serde_json::{Value, json};
use sluice_crds::config::{MAX_SHARDS, object_name};
use sluice_tests::harness::{ControlPlane, TestNamespace, install_crds, repo_root};

use chart_support::{
    Helm, chart_dir, ci_values, documents, ensure_monitoring_crds, find, numbers_as_f64, object_id,
    of_kind, server_dry_run,
};

/// Release name used for renders (the fullname becomes `sluice-test`).
const RELEASE: &str = "test";

/// The chart's appVersion, which image tags default to.
fn app_version() -> Result<String> {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml"))?)?;
    chart["appVersion"]
        .as_str()
        .map(str::to_owned)
        .context("Chart.yaml has no appVersion")
}

/// Renders the chart in `namespace` with `args` and parses the objects.
fn render(helm: &Helm, namespace: &str, args: &[&str]) -> Result<(String, Vec<Value>)> {
    let yaml = helm.template(&chart_dir(), RELEASE, namespace, args)?;
    let objects = documents(&yaml)?;
    Ok((yaml, objects))
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for object in objects {
        *kinds
            .entry(object["kind"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    kinds
}

#[test]
fn chart_lints_cleanly_with_default_and_ci_values() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let chart = chart_dir();
    let mut variants = vec![None];
    for entry in std::fs::read_dir(chart.join("ci"))? {
        variants.push(Some(entry?.path()));
    }
    ensure!(
        variants.len() >= 3,
        "expected values files in charts/sluice/ci/"
    );
    for values in variants {
        let mut args = vec![
            "lint".into(),
            "--strict".into(),
            chart.clone().into_os_string(),
        ];
        if let Some(values) = &values {
            args.extend(["-f".into(), values.clone().into_os_string()]);
        }
        let output = helm
            .run_ok(&args)
            .with_context(|| format!("helm lint with {values:?}"))?;
        ensure!(
            output.contains("0 chart(s) failed"),
            "helm lint with {values:?}:\n{output}"
        );
    }
    Ok(())
}

/// A way to install the chart: its name, the `helm template` arguments, and how many objects of each
/// kind it must render.
type Variant<'a> = (&'a str, Vec<&'a str>, &'a [(&'a str, usize)]);

#[tokio::test]
async fn every_variant_renders_and_passes_a_server_side_dry_run() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    ensure_monitoring_crds(&client).await?;
    let helm = Helm::new(control_plane)?;
    let namespace = TestNamespace::new(&client, "chart-render").await?;
    // The API server warns about any pod template that breaks the `restricted` Pod Security Standard.
    control_plane.kubectl().run_ok(
        [
            "label",
            "namespace",
            namespace.name(),
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    )?;
    // all-features scopes the operator to two namespaces; they must exist for its Roles.
    let watched = [
        TestNamespace::new(&client, "chart-team-a").await?,
        TestNamespace::new(&client, "chart-team-b").await?,
    ];
    let watch_json = format!(
        "operator.watchNamespaces={}",
        json!([watched[0].name(), watched[1].name()])
    );
    let all_features = ci_values("all-features-values.yaml");
    let files_mode = ci_values("files-mode-values.yaml");
    let all_features = all_features.to_str().context("non-UTF-8 path")?;
    let files_mode = files_mode.to_str().context("non-UTF-8 path")?;

    let variants: [Variant<'_>; 3] = [
        (
            "defaults",
            vec![],
            &[
                ("CustomResourceDefinition", 3),
                ("Deployment", 2),
                ("ServiceAccount", 2),
                ("ClusterRole", 1),
                ("ClusterRoleBinding", 1),
                ("Role", 2),
                ("RoleBinding", 2),
                ("Service", 3),
                ("PodDisruptionBudget", 2),
            ],
        ),
        (
            "files mode",
            vec!["-f", files_mode],
            &[("Deployment", 2), ("Role", 1), ("RoleBinding", 1)],
        ),
        (
            "every optional feature",
            vec!["-f", all_features, "--set-json", &watch_json],
            &[
                ("CustomResourceDefinition", 3),
                ("Deployment", 2),
                ("Role", 4),
                ("RoleBinding", 4),
                ("ClusterRole", 0),
                ("HorizontalPodAutoscaler", 1),
                ("NetworkPolicy", 2),
                ("ServiceMonitor", 2),
                ("PrometheusRule", 1),
                ("ConfigMap", 1),
            ],
        ),
    ];
    for (variant, args, expected) in variants {
        let (yaml, objects) =
            render(&helm, namespace.name(), &args).with_context(|| format!("render {variant}"))?;
        let counts = kinds(&objects);
        for (kind, count) in expected {
            ensure!(
                counts.get(*kind).copied().unwrap_or(0) == *count,
                "{variant}: expected {count} {kind}, rendered {counts:?}"
            );
        }
        let output = server_dry_run(control_plane, None, &yaml)?;
        ensure!(
            output.success,
            "{variant}: the API server rejected the rendered chart:\n{}\n{}",
            output.stderr.trim(),
            output.stdout.trim()
        );
        ensure!(
            !output.stderr.contains("PodSecurity"),
            "{variant}: a pod template breaks the restricted Pod Security Standard:\n{}",
            output.stderr
        );
        // Every rendered object was applied (nothing silently skipped): kubectl prints
        // `<kind>.<group>/<name> serverside-applied (server dry run)` for each.
        for object in &objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let applied = output.stdout.lines().any(|line| {
                line.split_once('/').is_some_and(|(resource, rest)| {
                    (resource == kind || resource.starts_with(&format!("{kind}.")))
                        && rest.starts_with(&format!("{name} "))
                })
            });
            ensure!(
                applied,
                "{variant}: {} missing from the dry-run output:\n{}",
                object_id(object),
                output.stdout
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_kind_end_to_end_manifests_are_accepted_by_the_api_server() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    let helm = Helm::new(control_plane)?;
    let namespace = TestNamespace::new(&client, "chart-kind").await?;
    control_plane.kubectl().run_ok(
        [
            "label",
            "namespace",
            namespace.name(),
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    )?;
    let kind_dir = repo_root().join("tests").join("kind");
    let read = |name: &str| -> Result<String> {
        // scripts/kind-e2e.sh uses namespace sluice-e2e for both the chart's watch list and the workload.
        Ok(std::fs::read_to_string(kind_dir.join(name))?.replace("sluice-e2e", namespace.name()))
    };
    let values = tempfile::NamedTempFile::new()?;
    std::fs::write(values.path(), read("values.yaml")?)?;
    let (chart, objects) = render(
        &helm,
        namespace.name(),
        &["-f", values.path().to_str().context("path")?],
    )?;
    let gateway = find(&objects, "Deployment", "-gateway")?;
    ensure!(
        container(gateway)?["image"] == "sluice-gateway:e2e",
        "the kind values must use the locally built image"
    );
    for (what, manifest, namespaced) in [
        ("the chart with tests/kind/values.yaml", chart, false),
        (
            "tests/kind/mock-provider.yaml",
            read("mock-provider.yaml")?,
            true,
        ),
        ("tests/kind/smoke.yaml", read("smoke.yaml")?, false),
    ] {
        let output = server_dry_run(
            control_plane,
            namespaced.then_some(namespace.name()),
            &manifest,
        )?;
        ensure!(
            output.success && !output.stderr.contains("PodSecurity"),
            "{what} is rejected or warned about:\n{}",
            output.stderr
        );
    }
    Ok(())
}

/// Values files that must fail `helm install`, and what the message must name.
const BAD_VALUES: &[(&str, &str, &[&str])] = &[
    (
        "top-level typo",
        "gatway:\n  replicaCount: 3\n",
        &["additional properties 'gatway' not allowed"],
    ),
    (
        "nested typo",
        "gateway:\n  replicaCont: 3\n",
        &["/gateway", "'replicaCont' not allowed"],
    ),
    (
        "deep typo",
        "gateway:\n  autoscaling:\n    maxReplica: 4\n",
        &["/gateway/autoscaling", "'maxReplica' not allowed"],
    ),
    (
        "typo in a toleration",
        "operator:\n  tolerations:\n    - key: a\n      efect: NoSchedule\n",
        &["/operator/tolerations/0", "'efect' not allowed"],
    ),
    (
        "string for an integer",
        "gateway:\n  replicaCount: two\n",
        &["/gateway/replicaCount", "want integer"],
    ),
    (
        "boolean label value",
        "gateway:\n  podLabels:\n    tier: true\n",
        &["/gateway/podLabels/tier", "want string"],
    ),
    (
        "unknown config source",
        "gateway:\n  configSource: etcd\n",
        &["/gateway/configSource", "'api', 'files'"],
    ),
    (
        "invalid gateway name",
        "gateway:\n  name: Prod_Gateway\n",
        &["/gateway/name"],
    ),
    (
        "port out of range",
        "gateway:\n  port: 70000\n",
        &["/gateway/port"],
    ),
    (
        "list for a map",
        "operator:\n  nodeSelector: [linux]\n",
        &["/operator/nodeSelector", "want object"],
    ),
    (
        "map for a list",
        "operator:\n  watchNamespaces: {team-a: true}\n",
        &["/operator/watchNamespaces", "want array"],
    ),
    (
        "bad pull policy",
        "operator:\n  image:\n    pullPolicy: Sometimes\n",
        &["/operator/image/pullPolicy"],
    ),
];

#[tokio::test]
async fn values_with_a_typo_or_a_wrong_type_fail_install_naming_the_key() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let helm = Helm::new(control_plane)?;
    let namespace = TestNamespace::new(&client, "chart-schema").await?;
    let dir = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (index, (case, values, expected)) in BAD_VALUES.iter().enumerate() {
        let file = dir.path().join(format!("bad-{index}.yaml"));
        std::fs::write(&file, values)?;
        let output = helm.run([
            "install".as_ref(),
            format!("bad-{index}").as_ref(),
            chart_dir().as_os_str(),
            "--namespace".as_ref(),
            namespace.name().as_ref(),
            "--set".as_ref(),
            "crds.enabled=false".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
        ])?;
        if output.success {
            failures.push(format!("{case}: helm install succeeded"));
        } else if let Some(missing) = expected
            .iter()
            .find(|needle| !output.stderr.contains(*needle))
        {
            failures.push(format!(
                "{case}: message lacks {missing:?}:\n{}",
                output.stderr.trim()
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    let releases = helm.run_ok([
        "list",
        "--namespace",
        namespace.name(),
        "--deployed",
        "--failed",
        "--pending",
        "--short",
    ])?;
    ensure!(
        releases.trim().is_empty(),
        "a rejected install left a release behind: {releases}"
    );
    Ok(())
}

/// Definitions that mirror Kubernetes types: their inner keys are Kubernetes' own and documented there.
const KUBERNETES_TYPES: &[&str] = &[
    "stringMap",
    "resources",
    "podSecurityContext",
    "containerSecurityContext",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "envVars",
    "objects",
    "networkPolicyPeers",
];

/// Object nodes of the schema that accept any content: Kubernetes objects passed through unchanged.
const FREE_FORM: &[&str] = &[
    "/definitions/affinity/properties/nodeAffinity",
    "/definitions/affinity/properties/podAffinity",
    "/definitions/affinity/properties/podAntiAffinity",
    "/definitions/envVars/items/properties/valueFrom",
    "/definitions/networkPolicyPeers/items/properties/ipBlock",
    "/definitions/networkPolicyPeers/items/properties/namespaceSelector",
    "/definitions/networkPolicyPeers/items/properties/podSelector",
    "/definitions/objects/items",
    "/definitions/resources/properties/claims/items",
    "/definitions/topologySpreadConstraints/items/properties/labelSelector",
    "/properties/gateway/properties/autoscaling/properties/behavior",
];

fn load_schema() -> Result<Value> {
    let path = chart_dir().join("values.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parse {}", path.display()))
}

/// Collects the pointers of object nodes that accept unknown keys, and of chart-owned properties
/// without a description.
fn walk_schema(
    node: &Value,
    pointer: &str,
    kubernetes_type: bool,
    open: &mut Vec<String>,
    undocumented: &mut Vec<String>,
) {
    let Some(map) = node.as_object() else { return };
    let is_object = map.get("type").is_some_and(|t| t == "object");
    if is_object {
        match map.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            Some(Value::Object(_)) => {} // a typed map: every value is checked
            _ => open.push(pointer.to_owned()),
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, property) in properties {
            let child = format!("{pointer}/properties/{name}");
            let documented =
                property.get("description").is_some() || property.get("$ref").is_some();
            if !kubernetes_type && !documented {
                undocumented.push(child.clone());
            }
            walk_schema(property, &child, kubernetes_type, open, undocumented);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key) {
            walk_schema(
                child,
                &format!("{pointer}/{key}"),
                kubernetes_type,
                open,
                undocumented,
            );
        }
    }
    if let Some(Value::Object(definitions)) = map.get("definitions") {
        for (name, definition) in definitions {
            walk_schema(
                definition,
                &format!("/definitions/{name}"),
                KUBERNETES_TYPES.contains(&name.as_str()),
                open,
                undocumented,
            );
        }
    }
}

#[test]
fn the_values_schema_closes_every_chart_object_and_documents_every_key() -> Result<()> {
    let schema = load_schema()?;
    ensure!(
        schema["additionalProperties"] == json!(false),
        "the schema's root accepts unknown keys"
    );
    let (mut open, mut undocumented) = (Vec::new(), Vec::new());
    walk_schema(&schema, "", false, &mut open, &mut undocumented);
    open.sort();
    let expected: Vec<String> = FREE_FORM.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(
        open, expected,
        "object nodes that accept unknown keys (only Kubernetes passthrough objects may)"
    );
    assert!(
        undocumented.is_empty(),
        "schema properties without a description: {undocumented:#?}"
    );
    Ok(())
}

/// The schema node of `path` (keys from the root), following `$ref`s into the definitions.
fn schema_node<'a>(schema: &'a Value, path: &[String]) -> Option<(&'a Value, Option<String>)> {
    let mut node = schema;
    let mut definition = None;
    for key in path {
        node = resolve(schema, node, &mut definition);
        node = node.get("properties")?.get(key)?;
    }
    Some((resolve(schema, node, &mut definition), definition))
}

fn resolve<'a>(schema: &'a Value, node: &'a Value, definition: &mut Option<String>) -> &'a Value {
    let reference = node.get("$ref").or_else(|| {
        node.get("allOf")
            .and_then(|all| all.get(0))
            .and_then(|first| first.get("$ref"))
    });
    match reference
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
    {
        Some(name) => {
            *definition = Some(name.to_owned());
            &schema["definitions"][name]
        }
        None => node,
    }
}

#[test]
fn every_chart_key_in_values_yaml_has_a_comment() -> Result<()> {
    let schema = load_schema()?;
    let text = std::fs::read_to_string(chart_dir().join("values.yaml"))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut list_indent: Option<usize> = None;
    let mut undocumented = Vec::new();
    let mut checked = 0;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(list) = list_indent {
            if indent > list || (indent == list && trimmed.starts_with("- ")) {
                continue;
            }
            list_indent = None;
        }
        if trimmed.starts_with("- ") {
            list_indent = Some(indent);
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            bail!("values.yaml line {}: not a key: {line}", index + 1)
        };
        while stack.last().is_some_and(|(level, _)| *level >= indent) {
            stack.pop();
        }
        let mut path: Vec<String> = stack.iter().map(|(_, key)| key.clone()).collect();
        path.push(key.to_owned());
        let parent_definition =
            schema_node(&schema, &path[..path.len() - 1]).and_then(|(_, definition)| definition);
        let inside_kubernetes_type = stack.len() >= 2
            && (1..path.len()).any(|end| {
                schema_node(&schema, &path[..end])
                    .and_then(|(_, definition)| definition)
                    .is_some_and(|definition| KUBERNETES_TYPES.contains(&definition.as_str()))
            });
        ensure!(
            schema_node(&schema, &path).is_some()
                || inside_kubernetes_type
                || parent_definition.is_some(),
            "values.yaml key {} is not in the schema",
            path.join(".")
        );
        stack.push((indent, key.to_owned()));
        if inside_kubernetes_type {
            continue;
        }
        checked += 1;
        let previous = lines[..index]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty());
        if !previous.is_some_and(|l| l.starts_with('#')) {
            undocumented.push(format!("line {}: {}", index + 1, path.join(".")));
        }
    }
    ensure!(
        checked > 50,
        "only {checked} keys checked; the values.yaml walk is broken"
    );
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a comment above them:\n{}",
        undocumented.join("\n")
    );
    Ok(())
}

#[test]
fn the_chart_crds_are_the_generated_crds_with_release_labels_and_keep_policy() -> Result<()> {
    // One source: the chart's copy is written and drift-checked with crds/generated/.
    sluice_crds::crdgen::check(&sluice_crds::crdgen::default_dir())?;
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let generated: BTreeMap<String, Value> = sluice_crds::crdgen::all()
        .into_iter()
        .map(|(_, crd)| {
            Ok((
                crd.metadata.name.clone().context("CRD without name")?,
                numbers_as_f64(serde_json::to_value(&crd)?),
            ))
        })
        .collect::<Result<_>>()?;

    let (_, objects) = render(&helm, "sluice", &[])?;
    let rendered = of_kind(&objects, "CustomResourceDefinition");
    ensure!(
        rendered.len() == generated.len(),
        "rendered {} CRDs, generated {}",
        rendered.len(),
        generated.len()
    );
    for crd in rendered {
        let name = crd["metadata"]["name"]
            .as_str()
            .context("CRD without name")?;
        let source = generated
            .get(name)
            .with_context(|| format!("{name} is not a generated CRD"))?;
        // Helm's YAML round trip writes 0.0 as 0: compare numbers by value.
        ensure!(
            numbers_as_f64(crd["spec"].clone()) == source["spec"],
            "{name}: the chart changes the CRD's spec"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{name}"
        );
    }

    let (_, objects) = render(&helm, "sluice", &["--set", "crds.keep=false"])?;
    for crd in of_kind(&objects, "CustomResourceDefinition") {
        ensure!(
            crd["metadata"]["annotations"]
                .get("helm.sh/resource-policy")
                .is_none(),
            "crds.keep=false still keeps {}",
            object_id(crd)
        );
    }
    let (_, objects) = render(&helm, "sluice", &["--set", "crds.enabled=false"])?;
    ensure!(
        of_kind(&objects, "CustomResourceDefinition").is_empty(),
        "crds.enabled=false still renders CRDs"
    );
    Ok(())
}

/// Whether any object in `objects` has a `subPath` key anywhere.
fn has_sub_path(objects: &[Value]) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::Object(map) => map.contains_key("subPath") || map.values().any(walk),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    objects.iter().any(walk)
}

/// The container of a rendered Deployment.
fn container(deployment: &Value) -> Result<&Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .get(0)
        .with_context(|| format!("{} has no container", object_id(deployment)))
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn assert_secure_pod(deployment: &Value) -> Result<()> {
    let id = object_id(deployment);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = container(deployment)?;
    let checks = [
        (
            &pod["securityContext"]["runAsNonRoot"],
            json!(true),
            "pod runAsNonRoot",
        ),
        (
            &pod["securityContext"]["seccompProfile"]["type"],
            json!("RuntimeDefault"),
            "pod seccompProfile",
        ),
        (
            &container["securityContext"]["readOnlyRootFilesystem"],
            json!(true),
            "readOnlyRootFilesystem",
        ),
        (
            &container["securityContext"]["allowPrivilegeEscalation"],
            json!(false),
            "allowPrivilegeEscalation",
        ),
        (
            &container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"]),
            "capabilities.drop",
        ),
    ];
    for (actual, expected, what) in checks {
        ensure!(
            *actual == expected,
            "{id}: {what} is {actual}, expected {expected}"
        );
    }
    ensure!(
        pod["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|uid| uid > 0),
        "{id}: runs as root"
    );
    ensure!(
        container["securityContext"].get("privileged").is_none(),
        "{id}: privileged is set"
    );
    ensure!(
        container["resources"]["requests"].is_object()
            && container["resources"]["limits"]["memory"].is_string(),
        "{id}: no requests or memory limit"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        ensure!(container[probe].is_object(), "{id}: no {probe}");
    }
    Ok(())
}

/// Names of every object the operator may publish for `gateway` (`part` = config or secrets), from
/// the Rust contract the operator and gateway share.
fn published_names(gateway: &str, part: &str) -> Vec<String> {
    (0..MAX_SHARDS)
        .map(|i| object_name(gateway, part, i))
        .collect()
}

#[test]
fn pods_are_secure_and_wired_to_the_operator_and_gateway_contracts() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let version = app_version()?;

    // API-watch mode (the default).
    let (_, objects) = render(&helm, "sluice", &[])?;
    ensure!(
        !has_sub_path(&objects),
        "a subPath mount never sees ConfigMap updates"
    );
    let operator = find(&objects, "Deployment", "-operator")?;
    let gateway = find(&objects, "Deployment", "-gateway")?;
    for deployment in [operator, gateway] {
        assert_secure_pod(deployment)?;
        let image = container(deployment)?["image"]
            .as_str()
            .context("no image")?;
        ensure!(
            image.ends_with(&format!(":{version}")),
            "{}: image {image} is not tagged with appVersion {version}",
            object_id(deployment)
        );
    }
    for account in of_kind(&objects, "ServiceAccount") {
        ensure!(
            account["automountServiceAccountToken"] == json!(false),
            "{} mounts tokens into every pod",
            object_id(account)
        );
    }
    ensure!(
        operator["spec"]["replicas"] == json!(2),
        "the operator runs two replicas with leader election"
    );
    ensure!(
        operator["spec"]["template"]["spec"]["automountServiceAccountToken"] == json!(true),
        "the operator needs its token"
    );
    ensure!(
        gateway["spec"]["template"]["spec"]["automountServiceAccountToken"] == json!(true),
        "API-watch mode needs the gateway's token"
    );
    ensure!(
        gateway["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
            ["app.kubernetes.io/component"]
            == "gateway",
        "topology spread must select the gateway's pods"
    );

    // The operator's flags parse with the real operator's command line, and RBAC names its Lease.
    let mut operator_args = vec!["sluice-operator".to_owned()];
    operator_args.extend(args(container(operator)?));
    let settings = sluice_operator::Settings::try_parse_from(&operator_args)
        .with_context(|| format!("the operator rejects the chart's flags {operator_args:?}"))?;
    settings.validate().map_err(anyhow::Error::msg)?;
    assert_eq!(settings.gateway_name, "default");
    assert_eq!(settings.gateway_namespace, "sluice");
    let role = find(&objects, "Role", "-operator")?;
    let lease_rule = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|rule| rule["resources"] == json!(["leases"]) && rule.get("resourceNames").is_some())
        .context("no Lease rule")?;
    assert_eq!(lease_rule["resourceNames"], json!([settings.lease_name()]));
    // Usage reports: the gateway reports to the operator's usage Service port as its pod, and the
    // operator may write its ledger ConfigMap (by name) under the name it derives.
    let usage_port = settings.usage_addr.port();
    let operator_service = find(&objects, "Service", "-operator")?;
    ensure!(
        operator_service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|port| port["name"] == "usage" && port["port"] == usage_port),
        "the operator Service lacks the usage port {usage_port}"
    );
    let usage_endpoint = format!(
        "--usage-endpoint=http://{}.sluice.svc:{usage_port}",
        operator_service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    );
    ensure!(
        args(container(gateway)?).contains(&usage_endpoint),
        "gateway args lack {usage_endpoint}"
    );
    ensure!(
        container(gateway)?["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|env| env["name"] == "POD_NAME"
                && env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
        "the gateway's POD_NAME must come from the downward API"
    );
    ensure!(
        role["rules"].as_array().into_iter().flatten().any(|rule| {
            rule["resources"] == json!(["configmaps"])
                && rule["resourceNames"] == json!([settings.usage_ledger_name()])
                && rule["verbs"] == json!(["get", "update"])
        }),
        "the operator Role lacks the usage ledger rule"
    );
    for (part, resource) in [("config", "configmaps"), ("secrets", "secrets")] {
        let rule = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|rule| {
                rule["resources"] == json!([resource]) && rule.get("resourceNames").is_some()
            })
            .with_context(|| format!("no named {resource} rule"))?;
        assert_eq!(
            rule["resourceNames"],
            json!(published_names("default", part)),
            "operator {resource}"
        );
    }
    let gateway_role = find(&objects, "Role", "-gateway")?;
    for (part, resource) in [("config", "configmaps"), ("secrets", "secrets")] {
        let rule = gateway_role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|rule| rule["resources"] == json!([resource]))
            .with_context(|| format!("no gateway {resource} rule"))?;
        assert_eq!(
            rule["resourceNames"],
            json!(published_names("default", part)),
            "gateway {resource}"
        );
        assert_eq!(
            rule["verbs"],
            json!(["get", "list", "watch"]),
            "gateway {resource}"
        );
    }

    // Mounted-files mode: no token, no RBAC, every published object projected as a directory.
    let (_, objects) = render(
        &helm,
        "sluice",
        &[
            "-f",
            ci_values("files-mode-values.yaml")
                .to_str()
                .context("path")?,
        ],
    )?;
    ensure!(
        !has_sub_path(&objects),
        "a subPath mount never sees ConfigMap updates"
    );
    let gateway = find(&objects, "Deployment", "-gateway")?;
    assert_secure_pod(gateway)?;
    let pod = &gateway["spec"]["template"]["spec"];
    ensure!(
        pod["automountServiceAccountToken"] == json!(false),
        "files mode must not mount a token"
    );
    ensure!(
        find(&objects, "Role", "-gateway").is_err(),
        "files mode must grant the gateway nothing"
    );
    let gateway_args = args(container(gateway)?);
    for flag in [
        "--config-dir=/etc/sluice/config",
        "--secrets-dir=/etc/sluice/secrets",
    ] {
        ensure!(
            gateway_args.iter().any(|arg| arg == flag),
            "gateway args {gateway_args:?} lack {flag}"
        );
    }
    for (volume, source, part) in [
        ("config", "configMap", "config"),
        ("secrets", "secret", "secrets"),
    ] {
        let projected = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == volume)
            .with_context(|| format!("no {volume} volume"))?;
        let sources = projected["projected"]["sources"]
            .as_array()
            .context("not a projected volume")?;
        let names: Vec<&str> = sources
            .iter()
            .filter_map(|s| s[source]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            published_names("staging", part),
            "{volume} volume sources"
        );
        ensure!(
            sources.iter().all(|s| s[source]["optional"] == json!(true)),
            "{volume}: every shard object must be optional"
        );
    }
    Ok(())
}

/// The manifest between `<<'YAML'` and `YAML` in the rendered NOTES.txt, dedented.
fn notes_manifest(notes: &str) -> Result<String> {
    let start = notes
        .find("<<'YAML'\n")
        .context("NOTES.txt has no <<'YAML' block")?
        + "<<'YAML'\n".len();
    let body = &notes[start..];
    let end = body
        .lines()
        .position(|line| line.trim() == "YAML")
        .context("unterminated YAML block")?;
    let lines: Vec<&str> = body.lines().take(end).collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    Ok(lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[tokio::test]
async fn the_quick_start_in_notes_is_accepted_by_the_api_server() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    let helm = Helm::new(control_plane)?;
    let namespace = TestNamespace::new(&client, "chart-notes").await?;
    let output = helm.run_ok([
        "install",
        "notes",
        chart_dir().to_str().context("path")?,
        "--dry-run=client",
        "--namespace",
        "sluice",
        "--set",
        "gateway.name=prod",
    ])?;
    let notes = output
        .split_once("NOTES:")
        .context("no NOTES in the install output")?
        .1;
    let manifest = notes_manifest(notes)?.replace(
        "namespace: team-a",
        &format!("namespace: {}", namespace.name()),
    );
    let objects = documents(&manifest)?;
    ensure!(
        objects.len() == 2 && objects.iter().all(|o| o["spec"]["gateway"] == "prod"),
        "the quick start must target the release's gateway:\n{manifest}"
    );
    let result = server_dry_run(control_plane, None, &manifest)?;
    ensure!(
        result.success,
        "the API server rejects the NOTES manifest:\n{}\n{manifest}",
        result.stderr
    );

    // The commands read the key where the operator writes it.
    ensure!(
        notes.contains(".status.secretName")
            && notes.contains(&format!(
                "{{.data.{}}}",
                sluice_crds::compile::KEY_DATA_CURRENT
            )),
        "NOTES.txt reads the key from the wrong place"
    );
    ensure!(
        notes.contains("kubectl -n team-a wait --for=condition=Ready"),
        "NOTES.txt should wait for Ready"
    );
    Ok(())
}

/// The Helm values of the GitOps examples in docs/gitops/: Argo CD's `valuesObject` and Flux's `values`.
fn gitops_values() -> Result<Vec<(String, Value)>> {
    let dir = repo_root().join("docs").join("gitops");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        for object in documents(&std::fs::read_to_string(&path)?)? {
            // Only the objects that install this chart (the others deploy a team's resources).
            let values = match object["kind"].as_str() {
                Some("Application") if object["spec"]["source"]["path"] == "charts/sluice" => {
                    &object["spec"]["source"]["helm"]["valuesObject"]
                }
                Some("HelmRelease")
                    if object["spec"]["chart"]["spec"]["chart"] == "./charts/sluice" =>
                {
                    &object["spec"]["values"]
                }
                _ => continue,
            };
            found.push((
                format!("{}: {}", path.display(), object_id(&object)),
                values.clone(),
            ));
        }
    }
    Ok(found)
}

#[test]
fn the_gitops_examples_install_the_chart_with_valid_values() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let examples = gitops_values()?;
    let names: BTreeSet<&str> = examples
        .iter()
        .map(|(name, _)| name.rsplit(": ").next().unwrap_or_default())
        .collect();
    ensure!(
        examples.len() >= 2,
        "expected an Argo CD Application and a Flux HelmRelease, found {names:?}"
    );
    let dir = tempfile::tempdir()?;
    for (name, values) in &examples {
        ensure!(values.is_object(), "{name} has no Helm values");
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, serde_yaml::to_string(values)?)?;
        render(&helm, "sluice", &["-f", file.to_str().context("path")?])
            .with_context(|| format!("{name}: the chart rejects its values"))?;
    }
    Ok(())
}

/// The names of the `sluice_*` series a PromQL text or dashboard uses, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(offset) = text[i..].find("sluice_") {
        let start = i + offset;
        let preceded = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'-');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |len| start + len);
        if !preceded {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(base.to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn alerts_and_dashboard_cover_what_operators_watch() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let (_, objects) = render(
        &helm,
        "sluice",
        &[
            "-f",
            ci_values("all-features-values.yaml")
                .to_str()
                .context("path")?,
        ],
    )?;

    let rule = find(&objects, "PrometheusRule", "")?;
    let alerts: BTreeSet<&str> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for wanted in [
        "SluiceRouteHighErrorRate",
        "SluiceRouteHighLatency",
        "SluiceRouteAllBackendsDown",
        "SluiceBudgetBurnRateHigh",
        "SluiceConfigReloadFailing",
        "SluiceUsageReportsFailing",
    ] {
        ensure!(alerts.contains(wanted), "no {wanted} alert in {alerts:?}");
    }
    for group in rule["spec"]["groups"].as_array().into_iter().flatten() {
        for alert in group["rules"].as_array().into_iter().flatten() {
            let expr = alert["expr"].as_str().unwrap_or_default();
            ensure!(
                expr.contains("namespace=\"sluice\""),
                "{} is not scoped to the release namespace: {expr}",
                alert["alert"]
            );
            ensure!(
                alert["annotations"]["summary"].is_string()
                    && alert["annotations"]["description"].is_string(),
                "{} lacks summary/description",
                alert["alert"]
            );
        }
    }

    let config_map = find(&objects, "ConfigMap", "-dashboard")?;
    ensure!(
        config_map["metadata"]["labels"]["grafana_dashboard"] == "1",
        "the Grafana sidecar label is missing"
    );
    let dashboard: Value = serde_json::from_str(
        config_map["data"]["sluice.json"]
            .as_str()
            .context("no dashboard JSON")?,
    )
    .context("the dashboard is not valid JSON")?;
    let dashboard_text = dashboard.to_string();
    let used = metric_names(&dashboard_text);
    for wanted in [
        "sluice_requests_total",
        "sluice_request_duration_seconds",
        "sluice_time_to_first_token_seconds",
        "sluice_tokens_total",
        "sluice_cost_usd_total",
        "sluice_backend_circuit_state",
        "sluice_config_reload_total",
        "sluice_budget_spent_ratio",
    ] {
        ensure!(
            used.contains(wanted),
            "the dashboard does not show {wanted}; it uses {used:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        ensure!(
            ids.insert(panel["id"].as_i64()),
            "duplicate panel id {}",
            panel["id"]
        );
        let grid = &panel["gridPos"];
        ensure!(
            grid["x"].as_i64().unwrap_or(99) + grid["w"].as_i64().unwrap_or(99) <= 24,
            "panel {} overflows the grid",
            panel["title"]
        );
    }
    Ok(())
}

/// Metrics the chart's alerts and dashboard use that neither component exports yet: the reliability
/// (circuit breaker), metering (budgets) and usage-report work adds them. The test below fails once
/// one of them is exported, so that this list shrinks with the code, and fails for any other name the
/// chart uses that nothing exports.
const NOT_YET_EXPORTED: &[&str] = &["sluice_budget_spent_ratio", "sluice_usage_reports_total"];

/// Labels Prometheus adds to every scraped series (target labels), and the histogram bucket label.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "service",
    "job",
    "instance",
    "container",
    "endpoint",
    "le",
];

/// Every sample's metric name in an exposition, with the label names it carries.
fn exported_series(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split_once('}').map_or("", |(labels, _)| labels)),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        let entry = series.entry(name.to_owned()).or_default();
        for pair in labels.split(',').filter(|pair| !pair.is_empty()) {
            if let Some((label, _)) = pair.split_once('=') {
                entry.insert(label.to_owned());
            }
        }
    }
    series
}

/// (metric, label) pairs a PromQL text relies on: label matchers right after a metric name, and the
/// `by (...)` labels of an aggregation directly over one metric.
fn label_uses(promql: &str) -> Result<BTreeSet<(String, String)>> {
    let matcher = regex::Regex::new(r#"(sluice_\w+)\{([^}]*)\}"#)?;
    let grouping = regex::Regex::new(
        r#"by \(([^)]*)\)\s*\((?:\s*(?:rate|increase|predict_linear)\()?\s*(sluice_\w+)"#,
    )?;
    let label_name = regex::Regex::new(r#"([a-z_]+)\s*(?:=~|!=|!~|=)"#)?;
    let mut uses = BTreeSet::new();
    for capture in matcher.captures_iter(promql) {
        for label in label_name.captures_iter(&capture[2]) {
            uses.insert((capture[1].to_owned(), label[1].to_owned()));
        }
    }
    for capture in grouping.captures_iter(promql) {
        for label in capture[1]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            uses.insert((capture[2].to_owned(), label.to_owned()));
        }
    }
    uses.retain(|(_, label)| !TARGET_LABELS.contains(&label.as_str()));
    Ok(uses)
}

#[test]
fn alerts_and_dashboard_use_only_metrics_and_labels_the_components_export() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let helm = Helm::new(control_plane)?;
    let (_, objects) = render(
        &helm,
        "sluice",
        &[
            "-f",
            ci_values("all-features-values.yaml")
                .to_str()
                .context("path")?,
        ],
    )?;
    let rules = serde_json::to_string(find(&objects, "PrometheusRule", "")?)?;
    let dashboard = find(&objects, "ConfigMap", "-dashboard")?["data"]["sluice.json"]
        .as_str()
        .context("no dashboard")?
        .to_owned();
    // The rendered JSON escapes quotes inside PromQL strings.
    let promql = format!("{rules}\n{dashboard}").replace("\\\"", "\"");

    // One request's worth of samples in every family, as a gateway and an operator export them.
    let gateway = sluice_gateway::metrics::Metrics::new(false);
    let backend = gateway.backend(&"team-a/chat".into(), &"openai".into(), "openai");
    gateway.record_request(
        Some(&backend),
        None,
        502,
        std::time::Duration::from_millis(20),
    );
    gateway.record_first_token(&backend, std::time::Duration::from_millis(5));
    gateway.record_usage(
        &backend,
        None,
        &sluice_gateway::metrics::TokenCounts {
            input: 10,
            output: 5,
            cached_input: 0,
        },
        Some(0.01),
    );
    gateway.record_attempt(&backend, Err("5xx"));
    gateway.record_reload("api", "error");
    let mut exported = exported_series(&gateway.encode());
    exported.extend(exported_series(
        &sluice_operator::metrics::Metrics::new().encode(),
    ));
    ensure!(
        exported.contains_key("sluice_requests_total"),
        "the gateway's exposition could not be read: {exported:?}"
    );
    let family = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name)
            .to_owned()
    };
    let families: BTreeSet<String> = exported.keys().map(|name| family(name)).collect();

    let used = metric_names(&promql);
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !families.contains(*name) && !NOT_YET_EXPORTED.contains(&name.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "the chart uses metrics nothing exports: {missing:?} (exported: {families:?})"
    );
    let now_exported: Vec<&&str> = NOT_YET_EXPORTED
        .iter()
        .filter(|name| families.contains(**name))
        .collect();
    ensure!(
        now_exported.is_empty(),
        "{now_exported:?} are exported now: remove them from NOT_YET_EXPORTED"
    );
    let unused: Vec<&&str> = NOT_YET_EXPORTED
        .iter()
        .filter(|name| !used.contains(**name))
        .collect();
    ensure!(
        unused.is_empty(),
        "NOT_YET_EXPORTED lists metrics the chart no longer uses: {unused:?}"
    );

    let uses = label_uses(&promql)?;
    ensure!(
        uses.iter()
            .any(|(metric, label)| metric == "sluice_requests_total" && label == "status_class"),
        "label extraction found too little: {uses:?}"
    );
    let mut wrong = Vec::new();
    for (metric, label) in &uses {
        if let Some(labels) = exported.get(metric)
            && !labels.contains(label)
        {
            wrong.push(format!(
                "{metric} has no label {label:?} (it has {labels:?})"
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "the chart's queries use labels the metrics lack:\n{}",
        wrong.join("\n")
    );
    Ok(())
}
