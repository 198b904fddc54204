//! Shared by the chart tests: the pinned helm, rendering the chart, splitting and dry-run applying
//! manifests, monitoring CRDs for the optional objects, and clients that impersonate a ServiceAccount.

#![expect(
    dead_code,
    reason = "each chart test binary uses a different part of this module"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::Deserialize as _;
use serde_json::Value;
use sluice_tests::harness::{ControlPlane, FIELD_MANAGER, KubectlOutput, repo_root, wait_for};

/// Path of the pinned helm, exported by `scripts/tools.sh`.
pub const HELM_ENV: &str = "SLUICE_HELM";
/// CRDs become Established within a second; allow for a loaded machine.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// `charts/sluice` in this repository.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("sluice")
}

/// A values file of the chart's `ci/` directory.
pub fn ci_values(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

/// The pinned helm: `SLUICE_HELM`, else the one `scripts/tools.sh` installs.
pub fn locate_helm() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(HELM_ENV).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{HELM_ENV}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let script = repo_root().join("scripts").join("tools.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    let exports = String::from_utf8(output.stdout).context("tools.sh printed non-UTF-8")?;
    let prefix = format!("export {HELM_ENV}=");
    exports
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| PathBuf::from(value.trim_matches('\'')))
        .with_context(|| format!("scripts/tools.sh printed no {HELM_ENV} line:\n{exports}"))
}

/// The pinned helm, pointed at the test control plane as its admin.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
    /// `None` leaves helm to `KUBECONFIG` (existing-cluster mode).
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// Helm for `control_plane`.
    pub fn new(control_plane: &ControlPlane) -> Result<Self> {
        let kubeconfig = if control_plane.is_existing_cluster() {
            None
        } else {
            Some(
                control_plane
                    .admin_kubeconfig()
                    .context("the local control plane has no admin kubeconfig")?
                    .to_owned(),
            )
        };
        Ok(Self {
            binary: locate_helm()?,
            kubeconfig,
        })
    }

    /// Runs helm with `args`; a non-zero exit is not an error here, callers assert on it.
    pub fn run<I, S>(&self, args: I) -> Result<KubectlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.binary);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        command.args(args).stdin(Stdio::null());
        let description = format!("{command:?}");
        let output = command
            .output()
            .with_context(|| format!("run {description}"))?;
        Ok(KubectlOutput {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Like [`Helm::run`], but a non-zero exit is an error carrying stderr.
    pub fn run_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.run(&args)?;
        if !output.success {
            bail!(
                "helm {args:?} exited with {}:\n{}",
                output.status,
                output.stderr
            );
        }
        Ok(output.stdout)
    }

    /// `helm template` of `chart` as release `release` in `namespace` with extra `args`
    /// (`-f file`, `--set k=v`, ...).
    pub fn template(
        &self,
        chart: &Path,
        release: &str,
        namespace: &str,
        args: &[&str],
    ) -> Result<String> {
        let mut all: Vec<std::ffi::OsString> = vec![
            "template".into(),
            release.into(),
            chart.into(),
            "--namespace".into(),
            namespace.into(),
        ];
        all.extend(args.iter().map(Into::into));
        self.run_ok(all)
    }
}

/// The documents of a multi-document YAML stream, as JSON values (empty documents dropped).
pub fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = Value::deserialize(document).context("parse a rendered YAML document")?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// `kind/name` of a rendered object, for messages.
pub fn object_id(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The rendered objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| object["kind"] == kind)
        .collect()
}

/// The one rendered object of `kind` whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> Result<&'a Value> {
    let matches: Vec<_> = of_kind(objects, kind)
        .into_iter()
        .filter(|object| {
            object["metadata"]["name"]
                .as_str()
                .is_some_and(|name| name.ends_with(suffix))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        other => bail!("expected one {kind} named *{suffix}, found {}", other.len()),
    }
}

/// `kubectl apply --server-side --dry-run=server` of `manifest` (objects without a namespace go to
/// `namespace`, else to the kubeconfig's): the API server runs admission (Pod Security warnings
/// included), schema validation (unknown fields are errors) and RBAC escalation checks, and
/// persists nothing.
pub fn server_dry_run(
    control_plane: &ControlPlane,
    namespace: Option<&str>,
    manifest: &str,
) -> Result<KubectlOutput> {
    let mut args = vec![
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=sluice-chart-tests",
        "-f",
        "-",
    ];
    if let Some(namespace) = namespace {
        args.extend(["--namespace", namespace]);
    }
    control_plane.kubectl().run(args, Some(manifest))
}

/// Minimal, structural copies of prometheus-operator's ServiceMonitor and PrometheusRule CRDs (only
/// the fields the chart uses, with their upstream names and types, unknown fields rejected), so that
/// the optional monitoring objects are validated by a real API server that has no Prometheus
/// operator.
pub const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector]
              properties:
                jobLabel: {type: string}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      honorLabels: {type: boolean}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

/// Installs [`MONITORING_CRDS`] unless the cluster already serves those kinds (a real
/// prometheus-operator installation is left alone), and waits until they are Established.
pub async fn ensure_monitoring_crds(client: &Client) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for document in serde_yaml::Deserializer::from_str(MONITORING_CRDS) {
        let crd =
            CustomResourceDefinition::deserialize(document).context("parse a monitoring CRD")?;
        let name = crd
            .metadata
            .name
            .clone()
            .context("a monitoring CRD has no name")?;
        if api.get_opt(&name).await?.is_none() {
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("apply CRD {name}"))?;
        }
        wait_established(client, &name).await?;
    }
    Ok(())
}

/// Waits until CRD `name` is Established.
pub async fn wait_established(client: &Client, name: &str) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    wait_for(
        &format!("CRD {name} to be Established"),
        ESTABLISHED_TIMEOUT,
        || async {
            let crd = api.get(name).await?;
            let established = crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|condition| condition.type_ == "Established" && condition.status == "True");
            Ok(established.then_some(()))
        },
    )
    .await
}

/// The username of ServiceAccount `name` in `namespace`, as RBAC sees it.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A client that acts as `user` (the admin impersonating it), bound to the calling runtime.
pub async fn client_as(control_plane: &ControlPlane, user: &str) -> Result<Client> {
    let path = control_plane
        .admin_kubeconfig()
        .context("no admin kubeconfig to impersonate from")?;
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("load {}", path.display()))?;
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).context("build an impersonating client")
}

/// `value` with every number as a float, so that `0` (Helm's YAML) and `0.0` (serde's) compare equal.
pub fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(number) => number
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The JSON pointer of the first place where `actual` and `expected` differ, with both values there.
pub fn first_difference(actual: &Value, expected: &Value) -> Option<String> {
    fn walk(pointer: String, actual: &Value, expected: &Value) -> Option<String> {
        match (actual, expected) {
            (Value::Object(a), Value::Object(e)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(e.keys()).collect();
                keys.into_iter().find_map(|key| {
                    walk(
                        format!("{pointer}/{key}"),
                        a.get(key).unwrap_or(&Value::Null),
                        e.get(key).unwrap_or(&Value::Null),
                    )
                })
            }
            (Value::Array(a), Value::Array(e)) if a.len() == e.len() => a
                .iter()
                .zip(e)
                .enumerate()
                .find_map(|(i, (a, e))| walk(format!("{pointer}/{i}"), a, e)),
            _ if actual == expected => None,
            _ => Some(format!("{pointer}: {actual} instead of {expected}")),
        }
    }
    walk(String::new(), actual, expected)
}

/// `kubectl auth can-i` as `user`: whether the API server's authorizer allows `verb` on `resource`
/// (`type` or `type/name`), optionally on a subresource, in `namespace` (`None`: all namespaces).
pub fn can_i(
    control_plane: &ControlPlane,
    user: &str,
    namespace: Option<&str>,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
) -> Result<bool> {
    let mut args = vec![
        "auth".to_owned(),
        "can-i".to_owned(),
        verb.to_owned(),
        resource.to_owned(),
        format!("--as={user}"),
    ];
    if let Some(subresource) = subresource {
        args.push(format!("--subresource={subresource}"));
    }
    match namespace {
        Some(namespace) => args.push(format!("--namespace={namespace}")),
        None => args.push("--all-namespaces".to_owned()),
    }
    let output = control_plane.kubectl().run(&args, None)?;
    match output.stdout.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!(
            "kubectl {args:?} printed {other:?} (stderr: {})",
            output.stderr.trim()
        ),
    }
}
