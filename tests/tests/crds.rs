//! The Sluice CRDs on a real kube-apiserver: install, examples, validation messages, `kubectl explain`, status subresource, printer columns, RBAC.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_tests::harness::{
    ControlPlane, NON_ADMIN_USER, TestNamespace, generated_crds, install_crds, repo_root, wait_for,
};

/// The three kinds and their plural resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LlmRoute,
    VirtualKey,
    Budget,
}

impl Kind {
    fn kind(self) -> &'static str {
        match self {
            Kind::LlmRoute => "LLMRoute",
            Kind::VirtualKey => "VirtualKey",
            Kind::Budget => "Budget",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::LlmRoute => "llmroutes",
            Kind::VirtualKey => "virtualkeys",
            Kind::Budget => "budgets",
        }
    }

    fn api(self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("sluice.dev", "v1alpha1", self.kind());
        let resource = ApiResource::from_gvk_with_plural(&gvk, self.plural());
        Api::namespaced_with(client.clone(), namespace, &resource)
    }

    /// A minimal valid object of this kind; cases below break one thing in it.
    fn valid(self, name: &str, namespace: &str) -> Value {
        let spec = match self {
            Kind::LlmRoute => json!({
                "model": "chat",
                "backends": [{
                    "name": "openai",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "credentialsRef": {"name": "provider-keys", "key": "openai"},
                }],
            }),
            Kind::VirtualKey => json!({"models": ["chat"]}),
            Kind::Budget => json!({"limitUSD": 100}),
        };
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": self.kind(),
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        })
    }
}

/// The shared control plane, an admin client, and the CRDs installed.
async fn setup() -> Result<(&'static ControlPlane, Client)> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    Ok((control_plane, client))
}

#[tokio::test]
async fn crds_install_and_become_established() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let api = Api::<CustomResourceDefinition>::all(client);
    let mut names = Vec::new();
    for generated in generated_crds()? {
        let name = generated
            .metadata
            .name
            .context("generated CRD without a name")?;
        let installed = api.get(&name).await?;
        let conditions = installed
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            ensure!(
                conditions
                    .iter()
                    .any(|condition| condition.type_ == wanted && condition.status == "True"),
                "CRD {name} is not {wanted}: {conditions:?}"
            );
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "budgets.sluice.dev",
            "llmroutes.sluice.dev",
            "virtualkeys.sluice.dev"
        ]
    );
    // The `sluice` category lists all three kinds at once.
    control_plane
        .kubectl()
        .run_ok(["get", "sluice", "--all-namespaces"], None)?;
    Ok(())
}

#[tokio::test]
async fn every_example_is_accepted_by_a_server_side_dry_run() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let kubectl = control_plane.kubectl();
    let examples_dir = repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples_dir)
        .with_context(|| format!("read {}", examples_dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|path| {
        path.extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
    });
    files.sort();
    ensure!(
        !files.is_empty(),
        "no examples in {}",
        examples_dir.display()
    );

    // A dry run creates nothing, so namespaces the examples create in one
    // file and use in another must exist for real.
    let namespaces_api = Api::<k8s_openapi::api::core::v1::Namespace>::all(client);
    for namespace in example_namespaces(&files)? {
        if namespaces_api.get_opt(&namespace).await?.is_none() {
            let object = k8s_openapi::api::core::v1::Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..Default::default()
            };
            namespaces_api
                .create(&PostParams::default(), &object)
                .await?;
        }
    }

    let mut failures = Vec::new();
    for file in &files {
        let output = kubectl.run(
            [
                "apply".as_ref(),
                "--server-side".as_ref(),
                "--dry-run=server".as_ref(),
                "--field-manager=sluice-tests".as_ref(),
                "-f".as_ref(),
                file.as_os_str(),
            ],
            None,
        )?;
        if !output.success {
            failures.push(format!("{}: {}", file.display(), output.stderr.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "examples rejected:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// Namespaces that example objects live in.
fn example_namespaces(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    use serde::Deserialize as _;
    let mut namespaces = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document)
                .with_context(|| format!("parse {}", file.display()))?;
            if let Some(namespace) = value
                .get("metadata")
                .and_then(|metadata| metadata.get("namespace"))
                .and_then(serde_yaml::Value::as_str)
                && !namespaces.iter().any(|known| known == namespace)
            {
                namespaces.push(namespace.to_owned());
            }
        }
    }
    Ok(namespaces)
}

/// One edit to a valid manifest: set a value at a JSON pointer, or remove it.
#[derive(Debug, Clone)]
enum Edit {
    Set(&'static str, Value),
    Remove(&'static str),
}

/// A manifest that must be rejected with an error naming `field`.
#[derive(Debug)]
struct InvalidCase {
    name: &'static str,
    kind: Kind,
    edits: Vec<Edit>,
    /// Field path the error must name, as kubectl prints it.
    field: &'static str,
    /// Part of the message that says what is wrong.
    message: &'static str,
}

fn case(
    name: &'static str,
    kind: Kind,
    edits: Vec<Edit>,
    field: &'static str,
    message: &'static str,
) -> InvalidCase {
    InvalidCase {
        name,
        kind,
        edits,
        field,
        message,
    }
}

/// An inline key in a manifest must be refused without being echoed back.
const INLINE_KEY: &str = "sk-live-inline-key-must-not-be-echoed";

fn invalid_cases() -> Vec<InvalidCase> {
    use Edit::{Remove, Set};
    use Kind::{Budget, LlmRoute, VirtualKey};
    // A second backend identical to the valid one, name included.
    let same_backend = json!({
        "name": "openai",
        "provider": "openai",
        "model": "gpt-4o",
        "credentialsRef": {"name": "provider-keys", "key": "openai"},
    });
    vec![
        // LLMRoute
        case(
            "route without backends",
            LlmRoute,
            vec![Remove("/spec/backends")],
            "spec.backends",
            "Required value",
        ),
        case(
            "route with an empty backend list",
            LlmRoute,
            vec![Set("/spec/backends", json!([]))],
            "spec.backends",
            "at least 1 items",
        ),
        case(
            "route without a model",
            LlmRoute,
            vec![Remove("/spec/model")],
            "spec.model",
            "Required value",
        ),
        case(
            "negative weight",
            LlmRoute,
            vec![Set("/spec/backends/0/weight", json!(-1))],
            "spec.backends[0].weight",
            "greater than or equal to 0",
        ),
        case(
            "weight of the wrong type",
            LlmRoute,
            vec![Set("/spec/backends/0/weight", json!("heavy"))],
            "spec.backends[0].weight",
            "expected numeric",
        ),
        case(
            "inline API key on a backend",
            LlmRoute,
            vec![Set("/spec/backends/0/apiKey", json!(INLINE_KEY))],
            "spec.backends[0].apiKey",
            "field not declared in schema",
        ),
        case(
            "unknown spec field",
            LlmRoute,
            vec![Set("/spec/upstreamUrl", json!("https://api.openai.com"))],
            "spec.upstreamUrl",
            "field not declared in schema",
        ),
        case(
            "unknown provider",
            LlmRoute,
            vec![Set("/spec/backends/0/provider", json!("cohere"))],
            "spec.backends[0].provider",
            "Unsupported value: \"cohere\"",
        ),
        case(
            "unknown strategy",
            LlmRoute,
            vec![Set("/spec/strategy", json!("random"))],
            "spec.strategy",
            "Unsupported value: \"random\"",
        ),
        case(
            "secret reference without a key",
            LlmRoute,
            vec![Set(
                "/spec/backends/0/credentialsRef",
                json!({"name": "provider-keys"}),
            )],
            "spec.backends[0].credentialsRef.key",
            "Required value",
        ),
        case(
            "hosted provider without credentials",
            LlmRoute,
            vec![Remove("/spec/backends/0/credentialsRef")],
            "spec.backends[0].credentialsRef",
            "needs credentialsRef",
        ),
        case(
            "azure-openai without endpoint and deployment",
            LlmRoute,
            vec![Set("/spec/backends/0/provider", json!("azure-openai"))],
            "spec.backends[0]",
            "needs endpoint and azure.deployment",
        ),
        case(
            "openai-compatible without endpoint",
            LlmRoute,
            vec![Set("/spec/backends/0/provider", json!("openai-compatible"))],
            "spec.backends[0].endpoint",
            "needs an endpoint",
        ),
        case(
            "endpoint that is not an http(s) URL",
            LlmRoute,
            vec![Set(
                "/spec/backends/0/endpoint",
                json!("ftp://models.example.com"),
            )],
            "spec.backends[0].endpoint",
            "should match",
        ),
        case(
            "backend name that is not a DNS label",
            LlmRoute,
            vec![Set("/spec/backends/0/name", json!("Primary_Backend"))],
            "spec.backends[0].name",
            "should match",
        ),
        case(
            "duplicate backend names",
            LlmRoute,
            vec![Set("/spec/backends/1", same_backend)],
            "spec.backends",
            "backend names must be unique",
        ),
        case(
            "lowest-cost strategy without pricing",
            LlmRoute,
            vec![Set("/spec/strategy", json!("lowest-cost"))],
            "spec.strategy",
            "needs pricing on every backend",
        ),
        case(
            "malformed duration",
            LlmRoute,
            vec![Set("/spec/timeouts", json!({"connect": "5 seconds"}))],
            "spec.timeouts.connect",
            "should match",
        ),
        case(
            "connect timeout longer than total",
            LlmRoute,
            vec![Set(
                "/spec/timeouts",
                json!({"connect": "5m", "total": "1m"}),
            )],
            "spec.timeouts.total",
            "must not exceed total",
        ),
        case(
            "initial backoff above max backoff",
            LlmRoute,
            vec![Set(
                "/spec/retry",
                json!({"initialBackoff": "5s", "maxBackoff": "1s"}),
            )],
            "spec.retry.initialBackoff",
            "must not exceed maxBackoff",
        ),
        case(
            "zero retry attempts",
            LlmRoute,
            vec![Set("/spec/retry", json!({"attempts": 0}))],
            "spec.retry.attempts",
            "greater than or equal to 1",
        ),
        case(
            "rate limit without any limit",
            LlmRoute,
            vec![Set("/spec/rateLimit", json!({}))],
            "spec.rateLimit",
            "needs requestsPerMinute, tokensPerMinute or both",
        ),
        case(
            "temperature above 2",
            LlmRoute,
            vec![Set("/spec/defaults", json!({"temperature": 3}))],
            "spec.defaults.temperature",
            "less than or equal to 2",
        ),
        // Budget
        case(
            "thresholds out of order",
            Budget,
            vec![Set("/spec/thresholds", json!([80, 50]))],
            "spec.thresholds",
            "strictly ascending",
        ),
        case(
            "repeated threshold",
            Budget,
            vec![Set("/spec/thresholds", json!([50, 50, 100]))],
            "spec.thresholds",
            "strictly ascending",
        ),
        case(
            "threshold above 100",
            Budget,
            vec![Set("/spec/thresholds", json!([50, 150]))],
            "spec.thresholds[1]",
            "less than or equal to 100",
        ),
        case(
            "negative limit",
            Budget,
            vec![Set("/spec/limitUSD", json!(-5))],
            "spec.limitUSD",
            "greater than or equal to 0",
        ),
        case(
            "missing limit",
            Budget,
            vec![Remove("/spec/limitUSD")],
            "spec.limitUSD",
            "Required value",
        ),
        case(
            "limit of the wrong type",
            Budget,
            vec![Set("/spec/limitUSD", json!("500 USD"))],
            "spec.limitUSD",
            "expected numeric",
        ),
        case(
            "unknown window",
            Budget,
            vec![Set("/spec/window", json!("yearly"))],
            "spec.window",
            "Unsupported value: \"yearly\"",
        ),
        case(
            "time zone that is not an IANA name",
            Budget,
            vec![Set("/spec/timeZone", json!("Europe Berlin"))],
            "spec.timeZone",
            "should match",
        ),
        // VirtualKey
        case(
            "zero requests per minute",
            VirtualKey,
            vec![Set("/spec/rateLimit", json!({"requestsPerMinute": 0}))],
            "spec.rateLimit.requestsPerMinute",
            "greater than or equal to 1",
        ),
        case(
            "expiry that is not a timestamp",
            VirtualKey,
            vec![Set("/spec/expiresAt", json!("next year"))],
            "spec.expiresAt",
            "date-time",
        ),
        case(
            "models as a string instead of a list",
            VirtualKey,
            vec![Set("/spec/models", json!("chat"))],
            "spec.models",
            "expected list",
        ),
        case(
            "bring-your-own secret without a key",
            VirtualKey,
            vec![Set("/spec/secretRef", json!({"name": "my-key"}))],
            "spec.secretRef.key",
            "Required value",
        ),
        case(
            "rotation of a bring-your-own key",
            VirtualKey,
            vec![
                Set("/spec/secretRef", json!({"name": "my-key", "key": "key"})),
                Set("/spec/rotation", json!({"generation": 2})),
            ],
            "spec.rotation",
            "rotation applies to generated keys",
        ),
        case(
            "malformed grace period",
            VirtualKey,
            vec![Set("/spec/rotation", json!({"gracePeriod": "1 day"}))],
            "spec.rotation.gracePeriod",
            "should match",
        ),
    ]
}

/// Applies `edits` to `document` (JSON pointers; the last segment may be
/// one past the end of an array to append).
fn apply_edits(document: &mut Value, edits: &[Edit]) -> Result<()> {
    for edit in edits {
        let pointer = match edit {
            Edit::Set(pointer, _) | Edit::Remove(pointer) => *pointer,
        };
        let (parent_pointer, last) = pointer
            .rsplit_once('/')
            .with_context(|| format!("bad pointer {pointer}"))?;
        let parent = document
            .pointer_mut(parent_pointer)
            .with_context(|| format!("no {parent_pointer} in the base manifest"))?;
        match (parent, edit) {
            (Value::Object(map), Edit::Set(_, value)) => {
                map.insert(last.to_owned(), value.clone());
            }
            (Value::Object(map), Edit::Remove(_)) => {
                map.remove(last)
                    .with_context(|| format!("nothing to remove at {pointer}"))?;
            }
            (Value::Array(items), Edit::Set(_, value)) => {
                let index: usize = last
                    .parse()
                    .with_context(|| format!("bad index in {pointer}"))?;
                match index.cmp(&items.len()) {
                    std::cmp::Ordering::Less => items[index] = value.clone(),
                    std::cmp::Ordering::Equal => items.push(value.clone()),
                    std::cmp::Ordering::Greater => bail!("index out of range in {pointer}"),
                }
            }
            (_, _) => bail!("cannot apply {edit:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_the_offending_field() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let namespace = TestNamespace::new(&client, "invalid").await?;
    let kubectl = control_plane.kubectl();
    let cases = invalid_cases();
    assert!(cases.len() >= 20, "the table must stay broad");

    let mut manifests = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let mut manifest = case.kind.valid(&format!("case-{index}"), namespace.name());
        apply_edits(&mut manifest, &case.edits).with_context(|| case.name)?;
        manifests.push(serde_json::to_string(&manifest)?);
    }

    // kubectl start-up dominates; run a few at a time.
    let outcomes: Vec<Result<sluice_tests::harness::KubectlOutput>> = std::thread::scope(|scope| {
        let mut outcomes = Vec::new();
        for chunk in manifests.chunks(4) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|manifest| {
                    let kubectl = &kubectl;
                    scope.spawn(move || {
                        kubectl.run(
                            [
                                "apply",
                                "--server-side",
                                "--field-manager=sluice-tests",
                                "-f",
                                "-",
                            ],
                            Some(manifest),
                        )
                    })
                })
                .collect();
            for handle in handles {
                outcomes.push(
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("kubectl thread panicked"))),
                );
            }
        }
        outcomes
    });

    let mut failures = Vec::new();
    for (case, outcome) in cases.iter().zip(outcomes) {
        let output = outcome.with_context(|| case.name)?;
        if output.success {
            failures.push(format!("{}: accepted, but must be rejected", case.name));
            continue;
        }
        let stderr = output.stderr.trim();
        if !stderr.contains(case.field) || !stderr.contains(case.message) {
            failures.push(format!(
                "{}: error does not name `{}` with \"{}\":\n    {stderr}",
                case.name, case.field, case.message
            ));
        }
        if stderr.contains(INLINE_KEY) {
            failures.push(format!("{}: the error echoes the inline key", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn rotation_generation_can_only_increase() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let namespace = TestNamespace::new(&client, "rotation").await?;
    let kubectl = control_plane.kubectl();
    let apply = |generation: i64| -> Result<sluice_tests::harness::KubectlOutput> {
        let mut manifest = Kind::VirtualKey.valid("rotating", namespace.name());
        apply_edits(
            &mut manifest,
            &[Edit::Set(
                "/spec/rotation",
                json!({"generation": generation}),
            )],
        )?;
        kubectl.run(
            [
                "apply",
                "--server-side",
                "--field-manager=sluice-tests",
                "-f",
                "-",
            ],
            Some(&serde_json::to_string(&manifest)?),
        )
    };
    let first = apply(3)?;
    assert!(first.success, "initial apply failed: {}", first.stderr);
    let raised = apply(4)?;
    assert!(
        raised.success,
        "raising the generation failed: {}",
        raised.stderr
    );
    let lowered = apply(2)?;
    assert!(!lowered.success, "lowering the generation was accepted");
    assert!(
        lowered.stderr.contains("spec.rotation.generation")
            && lowered.stderr.contains("can only increase"),
        "unexpected error: {}",
        lowered.stderr
    );
    Ok(())
}

/// Collapses every run of whitespace to one space, since kubectl re-wraps text.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_documentation() -> Result<()> {
    let (control_plane, _client) = setup().await?;
    let kubectl = control_plane.kubectl();
    // What the docs must at least say, independent of the generated YAML.
    let phrases: [(&str, &[&str]); 4] = [
        (
            "llmroute.spec",
            &[
                "backends <[]Object> -required-",
                "model <string> -required-",
                "strategy",
                "retry",
                "timeouts",
            ],
        ),
        (
            "llmroute.spec.backends",
            &["provider", "credentialsRef", "weight", "priority"],
        ),
        (
            "virtualkey.spec",
            &["models", "rateLimit", "budgetRefs", "expiresAt", "rotation"],
        ),
        (
            "budget.spec",
            &[
                "limitUSD <number> -required-",
                "thresholds",
                "window",
                "action",
            ],
        ),
    ];
    let crds = generated_crds()?;
    for (path, required) in phrases {
        let mut expected: Vec<String> = required.iter().map(|phrase| normalize(phrase)).collect();
        // Every description the CRD carries for this level must be shown.
        expected.extend(
            descriptions_at(&crds, path)?
                .iter()
                .map(|text| normalize(text)),
        );

        let explained = wait_for(
            &format!(
                "kubectl explain {path} (the OpenAPI document is published shortly after the CRD)"
            ),
            Duration::from_secs(30),
            || async { Ok(kubectl.run(["explain", path], None)?.success.then_some(())) },
        )
        .await
        .and_then(|()| kubectl.run_ok(["explain", path], None))?;
        let shown = normalize(&explained);
        let missing: Vec<_> = expected
            .iter()
            .filter(|phrase| !shown.contains(phrase.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "kubectl explain {path} lacks {missing:#?}\n--- output ---\n{explained}"
        );
    }
    Ok(())
}

/// The description of the schema node `kind.a.b` and of each of its
/// properties, taken from the generated CRD.
fn descriptions_at(crds: &[CustomResourceDefinition], path: &str) -> Result<Vec<String>> {
    let mut segments = path.split('.');
    let singular = segments.next().context("empty path")?;
    let crd = crds
        .iter()
        .find(|crd| crd.spec.names.singular.as_deref() == Some(singular))
        .with_context(|| format!("no generated CRD for {singular}"))?;
    let version = crd.spec.versions.first().context("CRD without versions")?;
    let mut node = serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|schema| schema.open_api_v3_schema.as_ref())
            .context("CRD without a schema")?,
    )?;
    for segment in segments {
        node = node["properties"][segment].clone();
        if node["type"] == "array" {
            node = node["items"].clone();
        }
        ensure!(!node.is_null(), "no {segment} in the {singular} schema");
    }
    let mut descriptions = Vec::new();
    if let Some(own) = node["description"].as_str() {
        descriptions.push(own.to_owned());
    }
    if let Some(properties) = node["properties"].as_object() {
        descriptions.extend(
            properties
                .values()
                .filter_map(|property| property["description"].as_str().map(str::to_owned)),
        );
    }
    ensure!(
        !descriptions.is_empty(),
        "the CRD documents nothing at {path}"
    );
    Ok(descriptions)
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() -> Result<()> {
    let (_control_plane, client) = setup().await?;
    let namespace = TestNamespace::new(&client, "status").await?;
    let api = Kind::LlmRoute.api(&client, namespace.name());
    let status = json!({"backendsReady": "1/1", "usage": {"requests": 42}});

    // A status sent with the object on create is dropped.
    let mut object: DynamicObject =
        serde_json::from_value(Kind::LlmRoute.valid("route", namespace.name()))?;
    object.data["status"] = status.clone();
    let created = api.create(&PostParams::default(), &object).await?;
    assert_eq!(created.data.get("status"), None, "create kept the status");

    // So is a status in a normal update, while the spec change is kept.
    let mut updated = created;
    updated.data["spec"]["model"] = json!("chat-v2");
    updated.data["status"] = status.clone();
    let replaced = api
        .replace("route", &PostParams::default(), &updated)
        .await?;
    assert_eq!(replaced.data["spec"]["model"], json!("chat-v2"));
    assert_eq!(replaced.data.get("status"), None, "update kept the status");

    // A merge patch of the main resource ignores status too.
    let patched = api
        .patch(
            "route",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    assert_eq!(patched.data.get("status"), None, "patch kept the status");

    // Through /status it is written, and a spec sent there is ignored.
    let through_status = api
        .patch_status(
            "route",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"model": "sneaky"}, "status": status})),
        )
        .await?;
    assert_eq!(through_status.data["status"]["backendsReady"], json!("1/1"));
    assert_eq!(
        through_status.data["status"]["usage"]["requests"],
        json!(42)
    );
    assert_eq!(through_status.data["spec"]["model"], json!("chat-v2"));
    Ok(())
}

/// Parses `kubectl get` table output into one map of column -> cell per row,
/// using the header's column start positions (cells may be empty).
fn parse_table(output: &str) -> Result<Vec<BTreeMap<String, String>>> {
    let mut lines = output.lines().filter(|line| !line.trim().is_empty());
    let header = lines.next().context("no header line")?;
    let mut starts = Vec::new();
    let mut previous = ' ';
    for (index, character) in header.char_indices() {
        if character != ' ' && previous == ' ' {
            starts.push(index);
        }
        previous = character;
    }
    let mut rows = Vec::new();
    for line in lines {
        let mut row = BTreeMap::new();
        for (position, start) in starts.iter().enumerate() {
            let end = starts.get(position + 1).copied().unwrap_or(usize::MAX);
            let name = header[*start..end.min(header.len())].trim().to_owned();
            let cell = line
                .get(*start..end.min(line.len()))
                .unwrap_or("")
                .trim()
                .to_owned();
            row.insert(name, cell);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn ready_condition() -> Value {
    json!([{
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "serving",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }])
}

/// Column name and the cell `kubectl get` must show under it.
type ExpectedCells = &'static [(&'static str, &'static str)];

#[tokio::test]
async fn printer_columns_show_spec_and_status_values() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let namespace = TestNamespace::new(&client, "columns").await?;
    let kubectl = control_plane.kubectl();

    let cases: [(Kind, Value, ExpectedCells); 3] = [
        (
            Kind::LlmRoute,
            json!({"backendsReady": "2/3", "usage": {"requests": 1234}, "conditions": ready_condition()}),
            &[
                ("NAME", "shown"),
                ("MODEL", "chat"),
                ("STRATEGY", "priority-failover"),
                ("BACKENDS", "2/3"),
                ("REQUESTS", "1234"),
                ("READY", "True"),
            ],
        ),
        (
            Kind::VirtualKey,
            json!({"keyPrefix": "sk-sl-7f3a", "usage": {"requests": 17, "costUSD": 0.42}, "conditions": ready_condition()}),
            &[
                ("NAME", "shown"),
                ("PREFIX", "sk-sl-7f3a"),
                ("REQUESTS", "17"),
                ("COST", "0.42"),
                ("READY", "True"),
            ],
        ),
        (
            Kind::Budget,
            json!({"spentUSD": 125.5, "percent": 25, "state": "Warning"}),
            &[
                ("NAME", "shown"),
                ("SPENT", "125.5"),
                ("LIMIT", "100"),
                ("PERCENT", "25"),
                ("STATE", "Warning"),
                ("WINDOW", "monthly"),
            ],
        ),
    ];
    for (kind, status, expected) in cases {
        let api = kind.api(&client, namespace.name());
        let object: DynamicObject = serde_json::from_value(kind.valid("shown", namespace.name()))?;
        api.create(&PostParams::default(), &object).await?;
        api.patch_status(
            "shown",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;

        let table = kubectl.run_ok(["get", kind.plural(), "-n", namespace.name()], None)?;
        let rows = parse_table(&table)?;
        ensure!(
            rows.len() == 1,
            "expected one {} row:\n{table}",
            kind.kind()
        );
        for (column, value) in expected {
            assert_eq!(
                rows[0].get(*column).map(String::as_str),
                Some(*value),
                "{} column {column}:\n{table}",
                kind.kind()
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn non_admin_user_needs_rbac_to_read_routes() -> Result<()> {
    let (control_plane, client) = setup().await?;
    let namespace = TestNamespace::new(&client, "rbac").await?;
    let user = control_plane.user_client().await?;
    let user_routes = Kind::LlmRoute.api(&user, namespace.name());

    let forbidden = user_routes.list(&Default::default()).await;
    assert!(
        matches!(&forbidden, Err(kube::Error::Api(status)) if status.code == 403),
        "an unbound user listed routes: {forbidden:?}"
    );

    let role = Role {
        metadata: ObjectMeta {
            name: Some("route-reader".to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["sluice.dev".to_owned()]),
            resources: Some(vec!["llmroutes".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), namespace.name())
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("route-reader".to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: "route-reader".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "User".to_owned(),
            name: NON_ADMIN_USER.to_owned(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace.name())
        .create(&PostParams::default(), &binding)
        .await?;

    wait_for(
        "the role binding to take effect",
        Duration::from_secs(10),
        || async { Ok(user_routes.list(&Default::default()).await.ok().map(|_| ())) },
    )
    .await?;
    let object: DynamicObject =
        serde_json::from_value(Kind::LlmRoute.valid("denied", namespace.name()))?;
    let create = user_routes.create(&PostParams::default(), &object).await;
    assert!(
        matches!(&create, Err(kube::Error::Api(status)) if status.code == 403),
        "a read-only user created a route: {create:?}"
    );
    let can_create = control_plane.kubectl_as_user().run(
        [
            "auth",
            "can-i",
            "create",
            "llmroutes.sluice.dev",
            "-n",
            namespace.name(),
        ],
        None,
    )?;
    assert_eq!(can_create.stdout.trim(), "no");
    Ok(())
}
