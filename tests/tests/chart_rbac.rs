//! The chart's RBAC for real: the API server's authorizer asked as the chart's ServiceAccounts
//! (impersonated), a table of what each may and may not do, and the operator and the gateway running
//! with nothing but those permissions: they publish, reconcile to Ready and serve a request.

mod chart_support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_crds::config::{MAX_SHARDS, object_name};
use sluice_gateway::config::kube::ApiSource;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_operator::{Operator, Settings};
use sluice_tests::harness::{
    ControlPlane, Kubectl, TestNamespace, install_crds, repo_root, wait_for,
};
use sluice_tests::mock::MockProvider;
use tokio_util::sync::CancellationToken;

use chart_support::{Helm, can_i, chart_dir, client_as, documents, service_account_user};

/// How long reconciling a handful of resources may take on a loaded machine.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// One release of the chart in its own namespace; uninstalled when dropped after a passing test, so
/// that no cluster-scoped RBAC is left behind.
struct Release {
    helm: Helm,
    name: String,
    gateway: String,
    namespace: TestNamespace,
}

impl Release {
    /// `helm install` of the chart as `name` (which contains "sluice", so object names are
    /// `<name>-operator` and `<name>-gateway`), for gateway `gateway`, CRDs left to the harness.
    async fn install(
        control_plane: &ControlPlane,
        client: &Client,
        name: &str,
        gateway: &str,
        args: &[&str],
    ) -> Result<Self> {
        install_crds(client).await?;
        let helm = Helm::new(control_plane)?;
        let namespace = TestNamespace::new(client, name).await?;
        let chart = chart_dir();
        let mut all = vec![
            "install",
            name,
            chart.to_str().context("path")?,
            "--namespace",
            namespace.name(),
            "--set",
            "crds.enabled=false",
        ];
        let gateway_value = format!("gateway.name={gateway}");
        all.extend(["--set", &gateway_value]);
        all.extend(args);
        helm.run_ok(&all)?;
        Ok(Self {
            helm,
            name: name.to_owned(),
            gateway: gateway.to_owned(),
            namespace,
        })
    }

    fn ns(&self) -> &str {
        self.namespace.name()
    }

    fn operator_user(&self) -> String {
        service_account_user(self.ns(), &format!("{}-operator", self.name))
    }

    fn gateway_user(&self) -> String {
        service_account_user(self.ns(), &format!("{}-gateway", self.name))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.helm.run([
                "uninstall",
                self.name.as_str(),
                "--namespace",
                self.namespace.name(),
            ]);
        }
    }
}

/// One authorization question and the answer the chart must produce.
struct Check<'a> {
    namespace: Option<&'a str>,
    verb: &'a str,
    resource: String,
    subresource: Option<&'a str>,
    allowed: bool,
}

impl<'a> Check<'a> {
    /// The same question about a subresource (`status`, `finalizers`, `exec`, `token`).
    fn of(mut self, subresource: &'a str) -> Self {
        self.subresource = Some(subresource);
        self
    }
}

fn allow<'a>(namespace: Option<&'a str>, verb: &'a str, resource: impl Into<String>) -> Check<'a> {
    Check {
        namespace,
        verb,
        resource: resource.into(),
        subresource: None,
        allowed: true,
    }
}

fn deny<'a>(namespace: Option<&'a str>, verb: &'a str, resource: impl Into<String>) -> Check<'a> {
    Check {
        namespace,
        verb,
        resource: resource.into(),
        subresource: None,
        allowed: false,
    }
}

/// Asks every check as `user` and fails listing every wrong answer.
fn assert_checks(control_plane: &ControlPlane, user: &str, checks: &[Check<'_>]) -> Result<()> {
    let mut wrong = Vec::new();
    for check in checks {
        let allowed = can_i(
            control_plane,
            user,
            check.namespace,
            check.verb,
            &check.resource,
            check.subresource,
        )?;
        if allowed != check.allowed {
            wrong.push(format!(
                "{} {}{} in {}: {} (expected {})",
                check.verb,
                check.resource,
                check
                    .subresource
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                check.namespace.unwrap_or("all namespaces"),
                if allowed { "allowed" } else { "denied" },
                if check.allowed { "allowed" } else { "denied" },
            ));
        }
    }
    ensure!(wrong.is_empty(), "{user}:\n{}", wrong.join("\n"));
    Ok(())
}

#[tokio::test]
async fn the_operator_may_do_its_work_and_nothing_else() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let release = Release::install(
        control_plane,
        &client,
        "sluice-rbac-operator",
        "rbac-operator",
        &[],
    )
    .await?;
    let team = TestNamespace::new(&client, "chart-rbac-team").await?;
    let (r, t) = (Some(release.ns()), Some(team.name()));
    let gw = &release.gateway;
    let lease = format!("sluice-operator-{gw}");
    let checks = [
        // Its resources, everywhere (cluster-wide by default), and their status.
        allow(None, "list", "llmroutes.sluice.dev"),
        allow(None, "watch", "virtualkeys.sluice.dev"),
        allow(t, "get", "budgets.sluice.dev"),
        allow(t, "patch", "llmroutes.sluice.dev").of("status"),
        allow(t, "update", "virtualkeys.sluice.dev").of("status"),
        allow(t, "patch", "budgets.sluice.dev").of("status"),
        allow(t, "update", "virtualkeys.sluice.dev").of("finalizers"),
        // Referenced Secrets (provider keys, bring-your-own keys) and generated key Secrets.
        allow(None, "watch", "secrets"),
        allow(t, "get", "secrets"),
        allow(t, "create", "secrets"),
        allow(t, "update", "secrets/team-key-vk"),
        allow(t, "create", "events.events.k8s.io"),
        allow(t, "patch", "events.events.k8s.io"),
        // Its Lease, and the gateway's published objects, in the release namespace.
        allow(r, "create", "leases.coordination.k8s.io"),
        allow(r, "get", format!("leases.coordination.k8s.io/{lease}")),
        allow(r, "update", format!("leases.coordination.k8s.io/{lease}")),
        allow(r, "create", "configmaps"),
        allow(r, "watch", "configmaps"),
        allow(r, "patch", format!("configmaps/sluice-{gw}-config")),
        allow(r, "delete", format!("configmaps/sluice-{gw}-config-15")),
        allow(r, "patch", format!("secrets/sluice-{gw}-secrets")),
        allow(r, "delete", format!("secrets/sluice-{gw}-secrets-3")),
        // Not the users' specs, not deletions of their objects.
        deny(t, "update", "llmroutes.sluice.dev"),
        deny(t, "patch", "virtualkeys.sluice.dev"),
        deny(t, "create", "budgets.sluice.dev"),
        deny(t, "delete", "llmroutes.sluice.dev"),
        deny(t, "delete", "secrets"),
        deny(t, "patch", "secrets"),
        deny(t, "create", "events"),
        // Published objects only in the release namespace, only under their names.
        deny(t, "create", "configmaps"),
        deny(r, "patch", "configmaps/kube-root-ca.crt"),
        deny(r, "delete", "configmaps/some-other-config"),
        deny(r, "patch", "secrets/some-other-secret"),
        deny(
            r,
            "delete",
            format!("configmaps/sluice-{gw}-config-{MAX_SHARDS}"),
        ),
        deny(r, "patch", "configmaps/sluice-other-gateway-config"),
        deny(r, "update", "leases.coordination.k8s.io/some-other-lease"),
        deny(r, "delete", format!("leases.coordination.k8s.io/{lease}")),
        // Nothing that runs code or changes the cluster.
        deny(r, "patch", "deployments.apps"),
        deny(r, "create", "pods"),
        deny(r, "create", "pods").of("exec"),
        deny(t, "create", "serviceaccounts").of("token"),
        deny(
            None,
            "delete",
            "customresourcedefinitions.apiextensions.k8s.io",
        ),
        deny(
            None,
            "update",
            "customresourcedefinitions.apiextensions.k8s.io",
        ),
        deny(None, "create", "clusterroles.rbac.authorization.k8s.io"),
        deny(None, "bind", "clusterroles.rbac.authorization.k8s.io"),
        deny(None, "escalate", "roles.rbac.authorization.k8s.io"),
        deny(None, "impersonate", "users"),
        deny(None, "list", "nodes"),
        deny(None, "create", "namespaces"),
        deny(None, "list", "configmaps"),
    ];
    assert_checks(control_plane, &release.operator_user(), &checks)?;
    Ok(())
}

#[tokio::test]
async fn an_operator_scoped_to_namespaces_cannot_read_anything_outside_them() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let watched = TestNamespace::new(&client, "chart-rbac-watched").await?;
    let other = TestNamespace::new(&client, "chart-rbac-other").await?;
    let watch = format!("operator.watchNamespaces={}", json!([watched.name()]));
    let release = Release::install(
        control_plane,
        &client,
        "sluice-rbac-scoped",
        "rbac-scoped",
        &["--set-json", &watch],
    )
    .await?;
    let (w, o) = (Some(watched.name()), Some(other.name()));
    let checks = [
        allow(w, "list", "secrets"),
        allow(w, "watch", "llmroutes.sluice.dev"),
        allow(w, "patch", "budgets.sluice.dev").of("status"),
        allow(w, "create", "events.events.k8s.io"),
        deny(o, "get", "secrets"),
        deny(o, "list", "secrets"),
        deny(None, "list", "secrets"),
        deny(o, "list", "llmroutes.sluice.dev"),
        deny(None, "watch", "virtualkeys.sluice.dev"),
        deny(o, "patch", "virtualkeys.sluice.dev").of("status"),
        deny(o, "create", "secrets"),
        deny(o, "create", "events.events.k8s.io"),
    ];
    assert_checks(control_plane, &release.operator_user(), &checks)?;
    let cluster_roles = control_plane.kubectl().run_ok(
        [
            "get",
            "clusterroles",
            "-l",
            "app.kubernetes.io/instance=sluice-rbac-scoped",
            "-o",
            "name",
        ],
        None,
    )?;
    ensure!(
        cluster_roles.trim().is_empty(),
        "a scoped operator must get nothing cluster-wide: {cluster_roles}"
    );
    Ok(())
}

/// Creates the published objects of `gateway` (as the operator would) so that the gateway's reads can
/// be tried for real.
async fn create_published_objects(client: &Client, namespace: &str, gateway: &str) -> Result<()> {
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(object_name(gateway, "config", 0)),
                ..ConfigMap::default()
            },
        )
        .await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta(object_name(gateway, "secrets", 0)),
                ..Secret::default()
            },
        )
        .await?;
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("unrelated-provider-keys".to_owned()),
                ..Secret::default()
            },
        )
        .await?;
    Ok(())
}

/// Whether `result` is the API server's 403.
fn forbidden<T>(result: kube::Result<T>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn the_gateway_may_read_its_own_objects_by_name_and_nothing_else() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let release = Release::install(
        control_plane,
        &client,
        "sluice-rbac-gateway",
        "rbac-gateway",
        &[],
    )
    .await?;
    let (r, gw) = (Some(release.ns()), release.gateway.as_str());
    let mut checks = vec![
        deny(r, "list", "secrets"),
        deny(r, "list", "configmaps"),
        deny(None, "list", "secrets"),
    ];
    for i in 0..MAX_SHARDS {
        for (resource, part) in [("configmaps", "config"), ("secrets", "secrets")] {
            let name = object_name(gw, part, i);
            checks.push(allow(r, "get", format!("{resource}/{name}")));
            checks.push(allow(r, "watch", format!("{resource}/{name}")));
            checks.push(deny(r, "patch", format!("{resource}/{name}")));
            checks.push(deny(r, "delete", format!("{resource}/{name}")));
        }
    }
    checks.extend([
        deny(r, "get", "secrets/unrelated-provider-keys"),
        deny(
            r,
            "get",
            format!("secrets/{}", object_name(gw, "secrets", MAX_SHARDS)),
        ),
        deny(r, "get", "secrets/sluice-other-gateway-secrets"),
        deny(r, "create", "configmaps"),
        deny(r, "get", "llmroutes.sluice.dev"),
        deny(r, "create", "leases.coordination.k8s.io"),
        deny(r, "create", "events.events.k8s.io"),
        deny(r, "create", "pods"),
    ]);
    assert_checks(control_plane, &release.gateway_user(), &checks)?;

    // The same, as real requests: a read or watch that names one of its objects works, anything
    // broader is refused.
    create_published_objects(&client, release.ns(), gw).await?;
    let as_gateway = client_as(control_plane, &release.gateway_user()).await?;
    let secrets = Api::<Secret>::namespaced(as_gateway.clone(), release.ns());
    let own = object_name(gw, "secrets", 0);
    secrets.get(&own).await.context("get its own Secret")?;
    let listed = secrets
        .list(&ListParams::default().fields(&format!("metadata.name={own}")))
        .await
        .context("list its own Secret by name")?;
    ensure!(
        listed.items.len() == 1,
        "the list by name returned {} objects",
        listed.items.len()
    );
    let mut watch = std::pin::pin!(
        secrets
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={own}"))
                    .timeout(5),
                "0"
            )
            .await
            .context("watch its own Secret by name")?
    );
    match futures::StreamExt::next(&mut watch).await {
        Some(Ok(WatchEvent::Added(secret))) => ensure!(
            secret.metadata.name.as_deref() == Some(own.as_str()),
            "watched {:?}",
            secret.metadata.name
        ),
        other => bail!("the watch by name did not deliver the Secret: {other:?}"),
    }
    ensure!(
        forbidden(secrets.list(&ListParams::default()).await),
        "the gateway may list every Secret in its namespace"
    );
    ensure!(
        forbidden(
            secrets
                .list(&ListParams::default().labels(&format!("sluice.dev/gateway={gw}")))
                .await
        ),
        "a label selector must not widen the gateway's reads"
    );
    ensure!(
        forbidden(secrets.get("unrelated-provider-keys").await),
        "the gateway may read an unrelated Secret"
    );
    ensure!(
        forbidden(
            Api::<ConfigMap>::namespaced(as_gateway, release.ns())
                .list(&ListParams::default())
                .await
        ),
        "the gateway may list every ConfigMap in its namespace"
    );

    // With mounted files the gateway gets no permission at all.
    let files = Release::install(
        control_plane,
        &client,
        "sluice-rbac-files",
        "rbac-files",
        &["--set", "gateway.configSource=files"],
    )
    .await?;
    let name = object_name("rbac-files", "config", 0);
    assert_checks(
        control_plane,
        &files.gateway_user(),
        &[
            deny(Some(files.ns()), "get", format!("configmaps/{name}")),
            deny(Some(files.ns()), "list", "configmaps"),
        ],
    )?;
    Ok(())
}

/// The operator, in this process, with nothing but the chart's operator ServiceAccount's permissions.
async fn start_operator_as_chart_account(
    control_plane: &ControlPlane,
    release: &Release,
) -> Result<CancellationToken> {
    let client = client_as(control_plane, &release.operator_user()).await?;
    let mut settings = Settings::try_parse_from([
        "sluice-operator",
        "--metrics-addr=127.0.0.1:0",
        &format!("--gateway-name={}", release.gateway),
        &format!("--gateway-namespace={}", release.ns()),
    ])?;
    settings.identity = Some(format!("{}-test", release.name));
    let operator = Operator::bind(settings, client).await?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = operator.run(token).await {
            eprintln!("operator failed: {error}");
        }
    });
    Ok(shutdown)
}

/// kstatus's rule for "Current", which Argo CD and Flux health checks apply: the status describes the
/// latest spec (`observedGeneration`) and says `Ready=True`.
fn is_current(object: &Value) -> bool {
    let observed = object["status"]["observedGeneration"].as_i64();
    let ready = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    observed.is_some() && observed == object["metadata"]["generation"].as_i64() && ready
}

/// The manifests in examples/, moved into `namespace` and onto `gateway`; Namespace objects dropped.
fn examples_for(namespace: &str, gateway: &str) -> Result<Vec<Value>> {
    let dir = repo_root().join("examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    let mut objects = Vec::new();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        for mut object in documents(&std::fs::read_to_string(path)?)? {
            if object["kind"] == "Namespace" {
                continue;
            }
            object["metadata"]["namespace"] = json!(namespace);
            if object["apiVersion"] == "sluice.dev/v1alpha1" {
                object["spec"]["gateway"] = json!(gateway);
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Names of the objects of `kind` in `namespace` that kstatus would not call Current.
fn not_current(kubectl: &Kubectl, kind: &str, namespace: &str) -> Result<Vec<String>> {
    let list: Value =
        serde_json::from_str(&kubectl.run_ok(["get", kind, "-n", namespace, "-o", "json"], None)?)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| !is_current(o))
        .map(|o| o["metadata"]["name"].to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_become_ready_under_the_charts_operator_permissions() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let release = Release::install(
        control_plane,
        &client,
        "sluice-rbac-examples",
        "rbac-examples",
        &[],
    )
    .await?;
    let team = TestNamespace::new(&client, "chart-rbac-examples").await?;
    let shutdown = start_operator_as_chart_account(control_plane, &release).await?;
    let kubectl = control_plane.kubectl();

    let objects = examples_for(team.name(), &release.gateway)?;
    let manifest = objects
        .iter()
        .map(serde_json::to_string)
        .collect::<serde_json::Result<Vec<_>>>()?
        .join("\n---\n");
    kubectl.run_ok(
        [
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&manifest),
    )?;

    // What a user (and `NOTES.txt`) runs.
    let timeout = format!("--timeout={}s", RECONCILE_TIMEOUT.as_secs());
    for kind in ["llmroutes", "virtualkeys", "budgets"] {
        kubectl
            .run_ok(
                [
                    "wait",
                    "--for=condition=Ready",
                    kind,
                    "--all",
                    "-n",
                    team.name(),
                    &timeout,
                ],
                None,
            )
            .with_context(|| {
                format!("{kind} did not become Ready under the chart's operator permissions")
            })?;
    }
    // Health as Argo CD and Flux judge it, before and after a spec change.
    for kind in ["llmroutes", "virtualkeys", "budgets"] {
        let stale = not_current(&kubectl, kind, team.name())?;
        ensure!(
            stale.is_empty(),
            "{kind} not Current by kstatus rules: {stale:?}"
        );
    }
    kubectl.run_ok(
        [
            "patch",
            "budget",
            "team-a-monthly",
            "-n",
            team.name(),
            "--type=merge",
            "-p",
            r#"{"spec":{"limitUSD":750}}"#,
        ],
        None,
    )?;
    wait_for(
        "the changed Budget's observedGeneration to catch up",
        RECONCILE_TIMEOUT,
        || async {
            Ok(not_current(&kubectl, "budgets", team.name())?
                .is_empty()
                .then_some(()))
        },
    )
    .await?;

    // The Lease is held by this operator, and Events were recorded with the chart's permissions.
    let lease = Api::<Lease>::namespaced(client.clone(), release.ns())
        .get(&format!("sluice-operator-{}", release.gateway))
        .await?;
    let identity = format!("{}-test", release.name);
    ensure!(
        lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(identity.as_str()),
        "the operator does not hold its Lease"
    );
    // A route whose Secret is missing: Ready=False with the reason (Degraded in Argo CD, InProgress
    // in kstatus), announced by a Warning Event, which the operator may record.
    let broken = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: LLMRoute\nmetadata: {{name: broken, namespace: {}}}\nspec:\n  gateway: {}\n  model: broken\n  backends:\n    - name: openai\n      provider: openai\n      model: gpt-4o\n      credentialsRef: {{name: no-such-secret, key: openai}}\n",
        team.name(),
        release.gateway
    );
    kubectl.run_ok(
        [
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&broken),
    )?;
    kubectl.run_ok(
        [
            "wait",
            "--for=condition=Ready=False",
            "llmroute/broken",
            "-n",
            team.name(),
            &timeout,
        ],
        None,
    )?;
    let event = wait_for(
        "a Warning Event about the broken route",
        RECONCILE_TIMEOUT,
        || async {
            let events = kubectl.run_ok(
                [
                    "get",
                    "events.events.k8s.io",
                    "-n",
                    team.name(),
                    "--field-selector=regarding.name=broken,type=Warning",
                    "-o",
                    "jsonpath={.items[*].reason}",
                ],
                None,
            )?;
            Ok((!events.trim().is_empty()).then_some(events))
        },
    )
    .await?;
    ensure!(
        event.contains("Secret") || event.contains("Unresolved"),
        "unexpected Event reasons: {event}"
    );
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_gateway_serve_a_request_with_only_the_charts_permissions() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    let release =
        Release::install(control_plane, &client, "sluice-rbac-live", "rbac-live", &[]).await?;
    let team = TestNamespace::new(&client, "chart-rbac-live").await?;
    let mock = MockProvider::start().await?;
    mock.expect_api_key("sk-chart-test");
    let shutdown = start_operator_as_chart_account(control_plane, &release).await?;
    let kubectl = control_plane.kubectl();
    let ns = team.name();
    let gw = &release.gateway;
    let manifest = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: provider-keys, namespace: {ns}}}
stringData: {{openai: sk-chart-test}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: chat, namespace: {ns}}}
spec:
  gateway: {gw}
  model: chat
  backends:
    - name: mock
      provider: openai
      model: gpt-4o-mini
      endpoint: {endpoint}
      credentialsRef: {{name: provider-keys, key: openai}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: {ns}}}
spec:
  gateway: {gw}
  models: [chat]
"#,
        endpoint = mock.openai_base_url()
    );
    kubectl.run_ok(
        [
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&manifest),
    )?;
    kubectl.run_ok(
        [
            "wait",
            "--for=condition=Ready",
            "llmroute/chat",
            "virtualkey/app",
            "-n",
            ns,
            &format!("--timeout={}s", RECONCILE_TIMEOUT.as_secs()),
        ],
        None,
    )?;
    let secret_name = kubectl.run_ok(
        [
            "get",
            "virtualkey",
            "app",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.secretName}",
        ],
        None,
    )?;
    let key = kubectl.run_ok(
        [
            "get",
            "secret",
            &secret_name,
            "-n",
            ns,
            "-o",
            &format!(
                "jsonpath={{.data.{}}}",
                sluice_crds::compile::KEY_DATA_CURRENT
            ),
        ],
        None,
    )?;
    let key = String::from_utf8(base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        key.trim(),
    )?)?;

    // The gateway in API-watch mode, as the chart's gateway ServiceAccount.
    let as_gateway = client_as(control_plane, &release.gateway_user()).await?;
    let source = ConfigSource::Api(ApiSource::new(as_gateway, release.ns(), gw.as_str()));
    let options = GatewayOptions::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    let gateway = Gateway::start(options, source).await?;
    if !gateway.wait_until_configured(RECONCILE_TIMEOUT).await {
        let readyz = reqwest::get(format!("http://{}/readyz", gateway.admin_addr()))
            .await?
            .text()
            .await?;
        bail!(
            "the gateway did not load its configuration with the chart's permissions: it may get, list and \
             watch its ConfigMaps and Secrets only by name (a `metadata.name` field selector per object), \
             never by label. /readyz: {readyz}"
        );
    }
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.addr()))
        .bearer_auth(&key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "the gateway answered {status}: {body}");
    gateway.shutdown().await;
    shutdown.cancel();
    Ok(())
}
