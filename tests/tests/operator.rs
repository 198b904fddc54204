//! The operator against a real kube-apiserver: publication of the compiled snapshot, updates and
//! deletes, broken references, provider-key and virtual-key rotation, secret hygiene, leader election
//! and failover, restoring hand edits, scale, and conditions plus Events for bad input.
//!
//! Each test runs its own operator (in-process, on its own runtime) for a gateway named after its
//! namespace, watching only that namespace.

mod operator_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use sluice_crds::compile::{KEY_DATA_CURRENT, KEY_DATA_PREVIOUS, KEY_PREFIX, key_display_prefix};
use sluice_crds::conditions::{ACCEPTED, READY, RESOLVED_REFS, reason};
use sluice_crds::config::{
    GATEWAY_LABEL, GatewayConfig, INDEX_KEY, MAX_SHARDS, PART_LABEL, credential_id, hash_key,
    load_half, object_name,
};
use sluice_crds::v1alpha1::{Budget, LLMRoute, VirtualKey};
use sluice_tests::harness::{ControlPlane, TestNamespace, install_crds, wait_for};

use operator_support::*;

/// A distinctive provider key, so a scan can find it anywhere it leaks.
const PROVIDER_KEY: &str = "sk-proj-PROVIDERCANARY-0123456789abcdefghijklmnop";

async fn setup(prefix: &str) -> Result<(Client, TestNamespace)> {
    capture_logs();
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.admin_client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::new(&client, prefix).await?;
    Ok((client, namespace))
}

fn generated_key(secret: &Secret, field: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(field)
        .and_then(|value| String::from_utf8(value.0.clone()).ok())
}

async fn key_secret(client: &Client, namespace: &str, key: &str) -> Result<Secret> {
    let name = sluice_crds::compile::generated_key_secret_name(key);
    wait_for(
        &format!("key Secret {namespace}/{name}"),
        PUBLISH_TIMEOUT,
        || async {
            Ok(Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await?)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_key_and_budget_are_published_as_the_compiled_snapshot() -> Result<()> {
    let (client, namespace) = setup("op-publish").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<Budget>(&client, budget(ns, "team", gateway)).await?;
    let mut chat = route(ns, "chat", gateway, "chat", "provider-keys", "openai");
    chat["spec"]["budgetRefs"] = json!([{"name": "team"}]);
    apply::<LLMRoute>(&client, chat).await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "ci",
            gateway,
            json!({"models": ["chat"], "budgetRefs": [{"name": "team"}]}),
        ),
    )
    .await?;
    let operator = RunningOperator::start(settings(gateway, ns, "solo"))?;

    let published = wait_for_snapshot(
        &client,
        ns,
        gateway,
        "route, key and budget published",
        |s| s.config.routes.len() == 1 && s.config.keys.len() == 1 && s.config.budgets.len() == 1,
    )
    .await?;
    // The published snapshot is exactly what the compiler makes of the API server's objects.
    let expected = compile_from_api(&client, ns, gateway).await?;
    ensure!(
        published == expected,
        "published {} but the API state compiles to {}",
        published.hash,
        expected.hash
    );
    ensure!(published.config.gateway == gateway);
    let credential = credential_id(ns, "provider-keys", "openai");
    ensure!(
        published.config.routes[0].backends[0].credential.as_deref() == Some(credential.as_str())
    );
    ensure!(
        published
            .secrets
            .credentials
            .get(&credential)
            .map(|v| v.expose())
            == Some(PROVIDER_KEY)
    );

    // The generated key: 256 bits behind the prefix, in a Secret the VirtualKey owns; only its hash is published.
    let key_object = Api::<VirtualKey>::namespaced(client.clone(), ns)
        .get("ci")
        .await?;
    let secret = key_secret(&client, ns, "ci").await?;
    let key = generated_key(&secret, KEY_DATA_CURRENT).context("no key in the key Secret")?;
    ensure!(
        key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43,
        "unexpected key shape"
    );
    let owner = secret
        .owner_references()
        .first()
        .context("the key Secret has no owner")?;
    ensure!(owner.kind == "VirtualKey" && owner.name == "ci" && owner.controller == Some(true));
    ensure!(Some(&owner.uid) == key_object.metadata.uid.as_ref());
    let hashes = &published.secrets.key_hashes[&format!("{ns}/ci")];
    ensure!(hashes.len() == 1 && hashes[0].sha256 == hash_key(&key));

    // Status: every kind Ready with observedGeneration; key status names the Secret and the prefix only.
    let key_object = wait_for_condition::<VirtualKey>(
        &client,
        ns,
        "ci",
        READY,
        "True",
        Some(reason::PUBLISHED),
        key_conditions,
    )
    .await?;
    let status = key_object.status.context("key status")?;
    ensure!(status.secret_name.as_deref() == Some("ci-sluice-key"));
    ensure!(status.key_prefix == Some(key_display_prefix(&key)));
    let route_object = wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "chat",
        READY,
        "True",
        Some(reason::PUBLISHED),
        route_conditions,
    )
    .await?;
    let route_status = route_object.status.context("route status")?;
    ensure!(route_status.backends_ready.as_deref() == Some("1/1"));
    ensure!(condition(&route_status.conditions, ACCEPTED).is_some_and(|c| c.0 == "True"));
    ensure!(condition(&route_status.conditions, RESOLVED_REFS).is_some_and(|c| c.0 == "True"));
    let budget_object =
        wait_for_condition::<Budget>(&client, ns, "team", READY, "True", None, budget_conditions)
            .await?;
    let budget_status = budget_object.status.context("budget status")?;
    ensure!(
        budget_status.window_start.is_some() && budget_status.resets_at.is_some(),
        "budget window missing"
    );

    // kubectl wait works on the conditions (kstatus-style Ready).
    ControlPlane::shared()?.kubectl().run_ok(
        [
            "wait",
            "--for=condition=Ready",
            "llmroute/chat",
            "virtualkey/ci",
            "budget/team",
            "-n",
            ns,
            "--timeout=30s",
        ],
        None,
    )?;

    // The published objects carry the labels and the snapshot hash.
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(&object_name(gateway, "config", 0))
        .await?;
    ensure!(config_map.labels().get(GATEWAY_LABEL).map(String::as_str) == Some(gateway));
    ensure!(config_map.labels().get(PART_LABEL).map(String::as_str) == Some("config"));
    ensure!(
        config_map
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("sluice-operator")
    );
    ensure!(config_map.annotations().get("sluice.dev/snapshot-hash") == Some(&published.hash));

    // Operations endpoints.
    ensure!(operator.get("/healthz").await?.0 == 200);
    ensure!(operator.get("/readyz").await?.0 == 200);
    ensure!(operator.metric("sluice_operator_is_leader").await? == 1.0);
    ensure!(
        operator
            .metric("sluice_operator_publishes_total{kind=\"Snapshot\",result=\"changed\"}")
            .await?
            >= 1.0
    );
    let (_, metrics) = operator.get("/metrics").await?;
    ensure!(
        metrics.contains("sluice_operator_compile_duration_seconds_count"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("sluice_operator_snapshot_bytes{part=\"config\"}"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_are_reflected_in_the_published_config() -> Result<()> {
    let (client, namespace) = setup("op-update").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "chat", gateway, "chat", "provider-keys", "openai"),
    )
    .await?;
    apply::<VirtualKey>(&client, virtual_key(ns, "ci", gateway, json!({}))).await?;
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;
    wait_for_snapshot(&client, ns, gateway, "first publication", |s| {
        s.config.routes.len() == 1 && s.config.keys.len() == 1
    })
    .await?;

    let mut renamed = route(ns, "chat", gateway, "chat-v2", "provider-keys", "openai");
    renamed["spec"]["aliases"] = json!(["chat-latest"]);
    apply::<LLMRoute>(&client, renamed).await?;
    wait_for_snapshot(&client, ns, gateway, "the renamed model", |s| {
        s.config.routes.len() == 1
            && s.config.routes[0].model == "chat-v2"
            && s.config.routes[0].aliases == ["chat-latest"]
    })
    .await?;
    // observedGeneration follows the new generation.
    wait_for_condition::<LLMRoute>(&client, ns, "chat", READY, "True", None, route_conditions)
        .await?;

    apply::<LLMRoute>(
        &client,
        route(ns, "embed", gateway, "embed", "provider-keys", "openai"),
    )
    .await?;
    wait_for_snapshot(&client, ns, gateway, "a second route", |s| {
        s.config.routes.len() == 2
    })
    .await?;

    Api::<LLMRoute>::namespaced(client.clone(), ns)
        .delete("chat", &DeleteParams::default())
        .await?;
    wait_for_snapshot(&client, ns, gateway, "the deleted route gone", |s| {
        s.config
            .routes
            .iter()
            .map(|r| r.model.as_str())
            .collect::<Vec<_>>()
            == ["embed"]
    })
    .await?;

    Api::<VirtualKey>::namespaced(client.clone(), ns)
        .delete("ci", &DeleteParams::default())
        .await?;
    let snapshot = wait_for_snapshot(&client, ns, gateway, "the deleted key gone", |s| {
        s.config.keys.is_empty()
    })
    .await?;
    ensure!(
        snapshot.secrets.key_hashes.is_empty(),
        "a deleted key's hash is still published"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_only_its_route_until_the_secret_appears() -> Result<()> {
    let (client, namespace) = setup("op-missing").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "good", gateway, "good", "provider-keys", "openai"),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "broken", gateway, "broken", "team-keys", "openai"),
    )
    .await?;
    // A route of another gateway in the same namespace is none of this operator's business.
    apply::<LLMRoute>(
        &client,
        route(
            ns,
            "elsewhere",
            "another-gateway",
            "elsewhere",
            "provider-keys",
            "openai",
        ),
    )
    .await?;
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;

    let snapshot = wait_for_snapshot(&client, ns, gateway, "the good route", |s| {
        s.config.routes.len() == 1
    })
    .await?;
    ensure!(
        snapshot.config.routes[0].model == "good",
        "only the good route is published"
    );
    let broken = wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "broken",
        RESOLVED_REFS,
        "False",
        Some(reason::SECRET_NOT_FOUND),
        route_conditions,
    )
    .await?;
    let status = broken.status.context("status")?;
    let (ready, ready_reason, message) = condition(&status.conditions, READY).context("Ready")?;
    ensure!(
        ready == "False" && ready_reason == reason::UNRESOLVED_REFS,
        "{ready} {ready_reason}"
    );
    ensure!(
        message.contains("team-keys"),
        "the message names the missing Secret: {message}"
    );
    ensure!(status.backends_ready.as_deref() == Some("0/1"));
    let event = wait_for_event(&client, ns, "LLMRoute", "broken", reason::SECRET_NOT_FOUND).await?;
    ensure!(event.type_.as_deref() == Some("Warning"));
    wait_for_condition::<LLMRoute>(&client, ns, "good", READY, "True", None, route_conditions)
        .await?;
    let elsewhere = Api::<LLMRoute>::namespaced(client.clone(), ns)
        .get("elsewhere")
        .await?;
    ensure!(
        elsewhere.status.is_none(),
        "a route of another gateway got a status: {:?}",
        elsewhere.status
    );

    // The Secret appearing is enough: the operator maps it to the routes that reference it.
    apply::<Secret>(
        &client,
        secret(
            ns,
            "team-keys",
            &[("openai", "sk-proj-second-0123456789abcdef")],
        ),
    )
    .await?;
    wait_for_snapshot(&client, ns, gateway, "both routes", |s| {
        s.config.routes.len() == 2
    })
    .await?;
    wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "broken",
        READY,
        "True",
        Some(reason::PUBLISHED),
        route_conditions,
    )
    .await?;
    wait_for_event(&client, ns, "LLMRoute", "broken", reason::PUBLISHED).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_provider_key_is_published_without_a_restart() -> Result<()> {
    let (client, namespace) = setup("op-provider-rotation").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "chat", gateway, "chat", "provider-keys", "openai"),
    )
    .await?;
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;
    let credential = credential_id(ns, "provider-keys", "openai");
    let first = wait_for_snapshot(&client, ns, gateway, "the first provider key", |s| {
        s.secrets
            .credentials
            .get(&credential)
            .is_some_and(|v| v.expose() == PROVIDER_KEY)
    })
    .await?;

    let rotated_key = "sk-proj-ROTATED-9876543210zyxwvutsrqponm";
    let started = Instant::now();
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", rotated_key)]),
    )
    .await?;
    let second = wait_for_snapshot(&client, ns, gateway, "the rotated provider key", |s| {
        s.secrets
            .credentials
            .get(&credential)
            .is_some_and(|v| v.expose() == rotated_key)
    })
    .await?;
    eprintln!(
        "rotated provider key published after {:?}",
        started.elapsed()
    );
    ensure!(
        first.hash != second.hash,
        "a new key must change the snapshot hash"
    );
    // The config half did not change: only the credential did.
    ensure!(first.config == second.config);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_keys_rotate_with_a_grace_period_and_bring_your_own_keys_are_hashed() -> Result<()>
{
    let (client, namespace) = setup("op-key-rotation").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    let byo_value = "byo-0123456789-abcdefghijklmnopqrstuvwxyz";
    apply::<Secret>(&client, secret(ns, "byo-key", &[("value", byo_value)])).await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "rotating",
            gateway,
            json!({"rotation": {"generation": 0, "gracePeriod": "4s"}}),
        ),
    )
    .await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "byo",
            gateway,
            json!({"secretRef": {"name": "byo-key", "key": "value"}}),
        ),
    )
    .await?;
    let mut operator = RunningOperator::start(settings(gateway, ns, "first"))?;
    let id = format!("{ns}/rotating");
    wait_for_snapshot(&client, ns, gateway, "both keys", |s| {
        s.config.keys.len() == 2
    })
    .await?;
    let first_key = generated_key(
        &key_secret(&client, ns, "rotating").await?,
        KEY_DATA_CURRENT,
    )
    .context("first key")?;

    // Bring your own: only the hash of the Secret's value is published; status shows a short prefix.
    let snapshot = load_published(&client, ns, gateway).await?;
    ensure!(snapshot.secrets.key_hashes[&format!("{ns}/byo")][0].sha256 == hash_key(byo_value));
    let byo =
        wait_for_condition::<VirtualKey>(&client, ns, "byo", READY, "True", None, key_conditions)
            .await?;
    let byo_status = byo.status.context("status")?;
    ensure!(byo_status.secret_name.as_deref() == Some("byo-key"));
    ensure!(byo_status.key_prefix == Some(key_display_prefix(byo_value)));

    // Rotation: a new key, and the old one keeps working until the grace period ends.
    let rotate = virtual_key(
        ns,
        "rotating",
        gateway,
        json!({"rotation": {"generation": 1, "gracePeriod": "4s"}}),
    );
    apply::<VirtualKey>(&client, rotate).await?;
    let rotated = wait_for("the rotated key Secret", PUBLISH_TIMEOUT, || async {
        let secret = key_secret(&client, ns, "rotating").await?;
        Ok(generated_key(&secret, KEY_DATA_PREVIOUS)
            .is_some()
            .then_some(secret))
    })
    .await?;
    let second_key = generated_key(&rotated, KEY_DATA_CURRENT).context("second key")?;
    ensure!(second_key != first_key, "rotation must issue a new key");
    ensure!(
        generated_key(&rotated, KEY_DATA_PREVIOUS) == Some(first_key.clone()),
        "the old key becomes the previous key"
    );
    let during = wait_for_snapshot(
        &client,
        ns,
        gateway,
        "both hashes during the grace period",
        |s| {
            s.secrets
                .key_hashes
                .get(&id)
                .is_some_and(|hashes| hashes.len() == 2)
        },
    )
    .await?;
    let hashes = &during.secrets.key_hashes[&id];
    ensure!(
        hashes
            .iter()
            .any(|h| h.sha256 == hash_key(&second_key) && h.not_after.is_none())
    );
    ensure!(
        hashes
            .iter()
            .any(|h| h.sha256 == hash_key(&first_key) && h.not_after.is_some())
    );
    let key = wait_for("rotation in the key status", PUBLISH_TIMEOUT, || async {
        let key = Api::<VirtualKey>::namespaced(client.clone(), ns)
            .get("rotating")
            .await?;
        let status = key.status.clone().unwrap_or_default();
        Ok(
            (status.rotation_generation == Some(1) && status.previous_key_expires_at.is_some())
                .then_some(key),
        )
    })
    .await?;
    ensure!(key.status.and_then(|s| s.key_prefix) == Some(key_display_prefix(&second_key)));
    wait_for_event(&client, ns, "VirtualKey", "rotating", "KeyRotated").await?;

    // After the grace period only the new key works, and the Secret forgets the old one.
    let after = wait_for_snapshot(&client, ns, gateway, "the previous key dropped", |s| {
        s.secrets
            .key_hashes
            .get(&id)
            .is_some_and(|hashes| hashes.len() == 1)
    })
    .await?;
    ensure!(after.secrets.key_hashes[&id][0].sha256 == hash_key(&second_key));
    wait_for(
        "the previous key removed from the Secret",
        PUBLISH_TIMEOUT,
        || async {
            let secret = key_secret(&client, ns, "rotating").await?;
            Ok(generated_key(&secret, KEY_DATA_PREVIOUS)
                .is_none()
                .then_some(()))
        },
    )
    .await?;

    // A new operator never replaces a key that exists.
    operator.stop().await?;
    let _second = RunningOperator::start(settings(gateway, ns, "second"))?;
    wait_for_condition::<VirtualKey>(&client, ns, "rotating", READY, "True", None, key_conditions)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = generated_key(
        &key_secret(&client, ns, "rotating").await?,
        KEY_DATA_CURRENT,
    );
    ensure!(
        kept == Some(second_key),
        "a restarted operator replaced an existing key"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_key_or_virtual_key_leaks_into_config_maps_status_events_or_logs() -> Result<()>
{
    let (client, namespace) = setup("op-leaks").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    let anthropic_key = "sk-ant-api03-ANTHROPICCANARY-abcdefghijklmnopqrstuvwxyz";
    let byo_value = "byo-LEAKCANARY-0123456789abcdefghijklmnop";
    apply::<Secret>(
        &client,
        secret(
            ns,
            "provider-keys",
            &[("openai", PROVIDER_KEY), ("anthropic", anthropic_key)],
        ),
    )
    .await?;
    apply::<Secret>(&client, secret(ns, "byo-key", &[("value", byo_value)])).await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "chat", gateway, "chat", "provider-keys", "openai"),
    )
    .await?;
    let mut claude = route(
        ns,
        "claude",
        gateway,
        "claude",
        "provider-keys",
        "anthropic",
    );
    claude["spec"]["backends"][0]["provider"] = json!("anthropic");
    claude["spec"]["backends"][0]["model"] = json!("claude-sonnet-4-5");
    apply::<LLMRoute>(&client, claude).await?;
    // Failure paths too: a missing Secret key and a key value that is too short produce messages.
    apply::<LLMRoute>(
        &client,
        route(ns, "wrong-key", gateway, "wrong", "provider-keys", "gemini"),
    )
    .await?;
    apply::<Secret>(
        &client,
        secret(ns, "short-key", &[("value", "short-CANARY")]),
    )
    .await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "short",
            gateway,
            json!({"secretRef": {"name": "short-key", "key": "value"}}),
        ),
    )
    .await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "byo",
            gateway,
            json!({"secretRef": {"name": "byo-key", "key": "value"}}),
        ),
    )
    .await?;
    for name in ["alpha", "beta", "gamma"] {
        apply::<VirtualKey>(
            &client,
            virtual_key(
                ns,
                name,
                gateway,
                json!({"rotation": {"generation": 0, "gracePeriod": "1h"}}),
            ),
        )
        .await?;
    }
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;
    wait_for_snapshot(&client, ns, gateway, "routes and keys", |s| {
        s.config.routes.len() == 2 && s.config.keys.len() == 4
    })
    .await?;
    // Rotate one key so a previous key exists too.
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "alpha",
            gateway,
            json!({"rotation": {"generation": 1, "gracePeriod": "1h"}}),
        ),
    )
    .await?;
    wait_for_condition::<VirtualKey>(
        &client,
        ns,
        "short",
        RESOLVED_REFS,
        "False",
        Some(reason::INVALID),
        key_conditions,
    )
    .await?;
    wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "wrong-key",
        RESOLVED_REFS,
        "False",
        Some(reason::SECRET_KEY_NOT_FOUND),
        route_conditions,
    )
    .await?;
    let snapshot = wait_for_snapshot(
        &client,
        ns,
        gateway,
        "the rotated key's previous hash",
        |s| {
            s.secrets
                .key_hashes
                .get(&format!("{ns}/alpha"))
                .is_some_and(|h| h.len() == 2)
        },
    )
    .await?;
    for name in ["alpha", "beta", "gamma", "byo"] {
        wait_for_condition::<VirtualKey>(&client, ns, name, READY, "True", None, key_conditions)
            .await?;
    }

    let mut virtual_keys = vec![byo_value.to_owned(), "short-CANARY".to_owned()];
    for name in ["alpha", "beta", "gamma"] {
        let secret = key_secret(&client, ns, name).await?;
        virtual_keys.extend(generated_key(&secret, KEY_DATA_CURRENT));
        virtual_keys.extend(generated_key(&secret, KEY_DATA_PREVIOUS));
    }
    ensure!(
        virtual_keys.len() == 6,
        "expected 4 current keys, 1 previous key and the short key"
    );
    let provider_keys = vec![PROVIDER_KEY.to_owned(), anthropic_key.to_owned()];
    let all_secrets: Vec<String> = provider_keys.iter().chain(&virtual_keys).cloned().collect();

    // The scan works: the provider keys are in the published Secret half (and nothing else is).
    let secrets_half = serde_json::to_string(&snapshot.secrets)?;
    ensure!(
        assert_no_secret("secrets half", &secrets_half, &provider_keys).is_err(),
        "the scan does not find what is there"
    );
    assert_no_secret("the published Secret half", &secrets_half, &virtual_keys)?;

    // Every ConfigMap in the cluster, raw and (for published config) decompressed.
    let config_maps = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut published_configs: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>> =
        BTreeMap::new();
    for config_map in &config_maps {
        let what = format!(
            "ConfigMap {}/{}",
            config_map.namespace().unwrap_or_default(),
            config_map.name_any()
        );
        for value in config_map.data.iter().flatten().map(|(_, v)| v.clone()) {
            assert_no_secret(&what, &value, &all_secrets)?;
        }
        for (key, value) in config_map.binary_data.iter().flatten() {
            assert_no_secret(&what, &String::from_utf8_lossy(&value.0), &all_secrets)?;
            if let Some(gw) = config_map.labels().get(GATEWAY_LABEL) {
                let files = published_configs
                    .entry((config_map.namespace().unwrap_or_default(), gw.clone()))
                    .or_default();
                files.insert(key.clone(), value.0.clone());
            }
        }
        if let (Some(gw), Some(index)) = (
            config_map.labels().get(GATEWAY_LABEL),
            config_map.data.as_ref().and_then(|d| d.get(INDEX_KEY)),
        ) {
            let files = published_configs
                .entry((config_map.namespace().unwrap_or_default(), gw.clone()))
                .or_default();
            files.insert(INDEX_KEY.to_owned(), index.clone().into_bytes());
        }
    }
    ensure!(
        published_configs.contains_key(&(ns.to_owned(), gateway.to_owned())),
        "this test's config was not scanned"
    );
    for ((config_ns, gw), files) in &published_configs {
        // Another test may be mid-publication; a half that does not load now is skipped, ours must load.
        match load_half::<GatewayConfig>("config", files.get(INDEX_KEY).map(Vec::as_slice), |key| {
            files.get(key).cloned()
        }) {
            Ok((_, config)) => assert_no_secret(
                &format!("published config {config_ns}/{gw}"),
                &serde_json::to_string(&config)?,
                &all_secrets,
            )?,
            Err(error) if config_ns != ns => eprintln!("skipping config {config_ns}/{gw}: {error}"),
            Err(error) => return Err(error.into()),
        }
    }

    // Every status of every Sluice resource in the cluster, and every Event.
    for route in Api::<LLMRoute>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        assert_no_secret(
            &format!("LLMRoute {} status", route.name_any()),
            &serde_json::to_string(&route.status)?,
            &all_secrets,
        )?;
    }
    for key in Api::<VirtualKey>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        assert_no_secret(
            &format!("VirtualKey {} status", key.name_any()),
            &serde_json::to_string(&key.status)?,
            &all_secrets,
        )?;
    }
    for budget in Api::<Budget>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        assert_no_secret(
            &format!("Budget {} status", budget.name_any()),
            &serde_json::to_string(&budget.status)?,
            &all_secrets,
        )?;
    }
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    ensure!(
        events
            .iter()
            .any(|e| e.reporting_controller.as_deref() == Some("sluice-operator")),
        "no operator Events to scan"
    );
    assert_no_secret("Events", &serde_json::to_string(&events)?, &all_secrets)?;

    // Every log line of this test binary so far (every operator of every test in it).
    let logs = captured_logs()?;
    ensure!(
        logs.contains("sluice-operator starting"),
        "the log capture saw no operator"
    );
    ensure!(
        logs.contains("virtual key Secret written"),
        "the log capture missed the key rotation"
    );
    assert_no_secret("the operator logs", &logs, &all_secrets)?;
    Ok(())
}

async fn lease_holder(client: &Client, namespace: &str, lease: &str) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(lease)
        .await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_elect_one_writer_and_fail_over_within_the_lease() -> Result<()> {
    let (client, namespace) = setup("op-leader").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    let lease = format!("sluice-operator-{gateway}");
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "chat", gateway, "chat", "provider-keys", "openai"),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "broken", gateway, "broken", "missing", "openai"),
    )
    .await?;
    let alpha = RunningOperator::start(settings(gateway, ns, "alpha"))?;
    let beta = RunningOperator::start(settings(gateway, ns, "beta"))?;
    let lease_duration = settings(gateway, ns, "x").lease_duration;

    let holder = wait_for("a Lease holder", PUBLISH_TIMEOUT, || async {
        lease_holder(&client, ns, &lease).await
    })
    .await?;
    let (mut leader, mut follower) = if holder == alpha.identity {
        (alpha, beta)
    } else {
        (beta, alpha)
    };
    ensure!(holder == leader.identity);
    wait_for_snapshot(&client, ns, gateway, "the leader's publication", |s| {
        s.config.routes.len() == 1
    })
    .await?;
    wait_for_event(&client, ns, "LLMRoute", "broken", reason::SECRET_NOT_FOUND).await?;

    // Exactly one writes: the follower keeps warm caches but never publishes, patches or records.
    ensure!(leader.metric("sluice_operator_is_leader").await? == 1.0);
    ensure!(follower.metric("sluice_operator_is_leader").await? == 0.0);
    ensure!(
        follower.get("/readyz").await?.0 == 200,
        "a follower's caches are warm"
    );
    let publishes = "sluice_operator_publishes_total{kind=\"Snapshot\",result=\"changed\"}";
    let patches = "sluice_operator_reconciles_total{kind=\"LLMRoute\",result=\"changed\"}";
    wait_for(
        "the leader's status patches to be counted",
        PUBLISH_TIMEOUT,
        || async {
            Ok(
                (leader.metric(patches).await? >= 2.0 && leader.metric(publishes).await? >= 1.0)
                    .then_some(()),
            )
        },
    )
    .await?;
    ensure!(
        follower.metric(publishes).await? == 0.0,
        "the follower published"
    );
    ensure!(
        follower.metric(patches).await? == 0.0,
        "the follower patched a status"
    );
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    for event in events
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("sluice-operator"))
    {
        ensure!(
            event.reporting_instance.as_deref() == Some(leader.identity.as_str()),
            "an Event from the follower"
        );
    }

    // Kill the leader: the follower takes over once the Lease runs out, within the lease duration.
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| leader.kill())?;
    let new_holder = wait_for(
        "the follower to take the Lease",
        lease_duration * 3,
        || async {
            Ok(lease_holder(&client, ns, &lease)
                .await?
                .filter(|h| *h == follower.identity))
        },
    )
    .await?;
    let handover = killed_at.elapsed();
    eprintln!("handover after a kill took {handover:?} (lease duration {lease_duration:?})");
    ensure!(new_holder == follower.identity);
    ensure!(
        handover <= lease_duration + Duration::from_millis(1500),
        "handover took {handover:?}"
    );
    wait_for("the new leader's gauge", PUBLISH_TIMEOUT, || async {
        Ok((follower.metric("sluice_operator_is_leader").await? == 1.0).then_some(()))
    })
    .await?;
    apply::<LLMRoute>(
        &client,
        route(
            ns,
            "after-failover",
            gateway,
            "after",
            "provider-keys",
            "openai",
        ),
    )
    .await?;
    wait_for_snapshot(
        &client,
        ns,
        gateway,
        "a publication by the new leader",
        |s| s.config.routes.len() == 2,
    )
    .await?;

    // A graceful stop releases the Lease: a third instance takes over well before it would expire.
    let third = RunningOperator::start(settings(gateway, ns, "gamma"))?;
    follower.stop().await?;
    let stopped_at = Instant::now();
    wait_for(
        "the third instance to take the Lease",
        PUBLISH_TIMEOUT,
        || async {
            Ok(lease_holder(&client, ns, &lease)
                .await?
                .filter(|h| *h == third.identity))
        },
    )
    .await?;
    let graceful = stopped_at.elapsed();
    eprintln!("handover after a graceful stop took {graceful:?}");
    ensure!(
        graceful < lease_duration,
        "a released Lease was not taken over before expiry ({graceful:?})"
    );
    leader = third;
    wait_for("the third instance's gauge", PUBLISH_TIMEOUT, || async {
        Ok((leader.metric("sluice_operator_is_leader").await? == 1.0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edited_or_deleted_outputs_are_restored_and_stray_shards_pruned() -> Result<()> {
    let (client, namespace) = setup("op-restore").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "chat", gateway, "chat", "provider-keys", "openai"),
    )
    .await?;
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;
    let published = wait_for_snapshot(&client, ns, gateway, "the publication", |s| {
        s.config.routes.len() == 1
    })
    .await?;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let config_name = object_name(gateway, "config", 0);
    let secrets_name = object_name(gateway, "secrets", 0);
    let original_index = config_maps
        .get(&config_name)
        .await?
        .data
        .and_then(|d| d.get(INDEX_KEY).cloned())
        .context("index")?;

    // A hand edit (an update, as `kubectl edit` makes) is reverted.
    let mut edited = config_maps.get(&config_name).await?;
    edited
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert(INDEX_KEY.to_owned(), "{}".to_owned());
    let edited_at = Instant::now();
    config_maps
        .replace(&config_name, &PostParams::default(), &edited)
        .await?;
    wait_for(
        "the edited index restored",
        Duration::from_secs(10),
        || async {
            let index = config_maps
                .get(&config_name)
                .await?
                .data
                .and_then(|d| d.get(INDEX_KEY).cloned());
            Ok((index.as_deref() == Some(original_index.as_str())).then_some(()))
        },
    )
    .await?;
    eprintln!("hand edit reverted after {:?}", edited_at.elapsed());

    // A deleted object is recreated.
    let deleted_at = Instant::now();
    secrets
        .delete(&secrets_name, &DeleteParams::default())
        .await?;
    config_maps
        .delete(&config_name, &DeleteParams::default())
        .await?;
    let restored = wait_for_snapshot(&client, ns, gateway, "the deleted objects restored", |_| {
        true
    })
    .await?;
    eprintln!("deleted objects restored after {:?}", deleted_at.elapsed());
    ensure!(
        deleted_at.elapsed() < Duration::from_secs(5),
        "restoring took {:?}",
        deleted_at.elapsed()
    );
    ensure!(restored == published, "the restored snapshot differs");

    // A stray shard object of this gateway is pruned.
    let stray = object_name(gateway, "config", 9);
    let labels = json!({GATEWAY_LABEL: gateway, PART_LABEL: "config", "app.kubernetes.io/managed-by": "sluice-operator"});
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": stray, "namespace": ns, "labels": labels}, "binaryData": {"shard-09": "AAAA"}});
    config_maps
        .patch(
            &stray,
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&manifest),
        )
        .await?;
    wait_for(
        "the stray shard pruned",
        Duration::from_secs(10),
        || async { Ok(config_maps.get_opt(&stray).await?.is_none().then_some(())) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_foreign_secrets_and_missing_budgets_get_false_conditions_and_events()
-> Result<()> {
    let (client, namespace) = setup("op-conflicts").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    // Two routes claiming one model: the older (here: same second, so the first by name) wins.
    apply::<LLMRoute>(
        &client,
        route(ns, "first", gateway, "shared", "provider-keys", "openai"),
    )
    .await?;
    apply::<LLMRoute>(
        &client,
        route(ns, "second", gateway, "shared", "provider-keys", "openai"),
    )
    .await?;
    let mut foreign = route(ns, "foreign", gateway, "foreign", "provider-keys", "openai");
    foreign["spec"]["backends"][0]["credentialsRef"]["namespace"] = json!("kube-system");
    apply::<LLMRoute>(&client, foreign).await?;
    apply::<VirtualKey>(
        &client,
        virtual_key(
            ns,
            "spender",
            gateway,
            json!({"budgetRefs": [{"name": "absent"}]}),
        ),
    )
    .await?;
    apply::<VirtualKey>(&client, virtual_key(ns, "fine", gateway, json!({}))).await?;
    let _operator = RunningOperator::start(settings(gateway, ns, "solo"))?;

    let second = wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "second",
        ACCEPTED,
        "False",
        Some(reason::CONFLICT),
        route_conditions,
    )
    .await?;
    let (_, _, message) = condition(&route_conditions(&second), ACCEPTED).context("Accepted")?;
    ensure!(
        message.contains("first"),
        "the conflict message names the winner: {message}"
    );
    let event = wait_for_event(&client, ns, "LLMRoute", "second", reason::CONFLICT).await?;
    ensure!(event.type_.as_deref() == Some("Warning"));
    wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "foreign",
        RESOLVED_REFS,
        "False",
        Some(reason::REF_NOT_PERMITTED),
        route_conditions,
    )
    .await?;
    wait_for_event(
        &client,
        ns,
        "LLMRoute",
        "foreign",
        reason::REF_NOT_PERMITTED,
    )
    .await?;
    wait_for_condition::<VirtualKey>(
        &client,
        ns,
        "spender",
        RESOLVED_REFS,
        "False",
        Some(reason::BUDGET_NOT_FOUND),
        key_conditions,
    )
    .await?;
    wait_for_event(
        &client,
        ns,
        "VirtualKey",
        "spender",
        reason::BUDGET_NOT_FOUND,
    )
    .await?;

    // Nothing else is affected.
    wait_for_condition::<LLMRoute>(&client, ns, "first", READY, "True", None, route_conditions)
        .await?;
    wait_for_condition::<VirtualKey>(&client, ns, "fine", READY, "True", None, key_conditions)
        .await?;
    let snapshot = load_published(&client, ns, gateway).await?;
    let routes: Vec<&str> = snapshot
        .config
        .routes
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    ensure!(
        routes == [format!("{ns}/first")],
        "published routes: {routes:?}"
    );
    let keys: Vec<&str> = snapshot.config.keys.iter().map(|k| k.id.as_str()).collect();
    ensure!(keys == [format!("{ns}/fine")], "published keys: {keys:?}");

    // Events on transitions only: the same failures do not repeat on later passes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    apply::<LLMRoute>(
        &client,
        route(
            ns,
            "unrelated",
            gateway,
            "unrelated",
            "provider-keys",
            "openai",
        ),
    )
    .await?;
    wait_for_condition::<LLMRoute>(
        &client,
        ns,
        "unrelated",
        READY,
        "True",
        None,
        route_conditions,
    )
    .await?;
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let conflict_events: Vec<_> = events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason::CONFLICT)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("second")
        })
        .collect();
    ensure!(
        conflict_events.len() == 1,
        "expected one conflict Event, got {}",
        conflict_events.len()
    );
    ensure!(
        conflict_events[0].series.is_none(),
        "the conflict Event repeated: {:?}",
        conflict_events[0].series
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_routes_and_ten_thousand_keys_publish_within_object_limits() -> Result<()> {
    const ROUTES: usize = 1_000;
    const KEYS: usize = 10_000;
    let (client, namespace) = setup("op-scale").await?;
    let (ns, gateway) = (namespace.name(), namespace.name());
    apply::<Secret>(
        &client,
        secret(ns, "provider-keys", &[("openai", PROVIDER_KEY)]),
    )
    .await?;
    apply::<Budget>(&client, budget(ns, "team", gateway)).await?;
    let started = Instant::now();
    create_all(
        &client,
        ns,
        (0..ROUTES).map(|i| {
            let mut manifest = route(
                ns,
                &format!("route-{i:04}"),
                gateway,
                &format!("model-{i:04}"),
                "provider-keys",
                "openai",
            );
            manifest["spec"]["aliases"] = json!([format!("alias-{i:04}")]);
            manifest["spec"]["budgetRefs"] = json!([{"name": "team"}]);
            manifest
        }),
    )
    .await?;
    create_all(&client, ns, (0..KEYS).map(|i| {
        virtual_key(ns, &format!("key-{i:05}"), gateway, json!({"models": [format!("model-{:04}", i % ROUTES)], "budgetRefs": [{"name": "team"}], "rateLimit": {"requestsPerMinute": 600}}))
    }))
    .await?;
    eprintln!(
        "created {ROUTES} routes and {KEYS} keys in {:?}",
        started.elapsed()
    );

    let operator_started = Instant::now();
    let mut scale_settings = settings(gateway, ns, "solo");
    scale_settings.status_concurrency = 32;
    let _operator = RunningOperator::start(scale_settings)?;
    let snapshot = wait_for(
        "all routes and keys published",
        Duration::from_secs(600),
        || async {
            let snapshot = load_published(&client, ns, gateway).await?;
            Ok(
                (snapshot.config.routes.len() == ROUTES && snapshot.config.keys.len() == KEYS)
                    .then_some(snapshot),
            )
        },
    )
    .await?;
    eprintln!(
        "published {ROUTES} routes and {KEYS} keys (issuing every key) {:?} after the operator started",
        operator_started.elapsed()
    );
    ensure!(snapshot.secrets.key_hashes.len() == KEYS);

    let (config_maps, secrets) = published_objects(&client, ns, gateway).await?;
    let config_maps: Vec<&ConfigMap> = config_maps
        .iter()
        .filter(|c| c.labels().get(PART_LABEL).is_some_and(|p| p == "config"))
        .collect();
    let secrets: Vec<&Secret> = secrets
        .iter()
        .filter(|s| s.labels().get(PART_LABEL).is_some_and(|p| p == "secrets"))
        .collect();
    ensure!(
        !config_maps.is_empty()
            && config_maps.len() <= MAX_SHARDS
            && !secrets.is_empty()
            && secrets.len() <= MAX_SHARDS
    );
    const OBJECT_LIMIT: usize = 1024 * 1024;
    for config_map in &config_maps {
        let size: usize = config_map
            .data
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + config_map
                .binary_data
                .iter()
                .flatten()
                .map(|(k, v)| k.len() + v.0.len())
                .sum::<usize>();
        eprintln!("ConfigMap {}: {size} bytes", config_map.name_any());
        ensure!(
            size < OBJECT_LIMIT,
            "ConfigMap {} holds {size} bytes",
            config_map.name_any()
        );
    }
    for secret in &secrets {
        let size: usize = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.0.len())
            .sum();
        eprintln!("Secret {}: {size} bytes", secret.name_any());
        ensure!(
            size < OBJECT_LIMIT,
            "Secret {} holds {size} bytes",
            secret.name_any()
        );
    }
    // Every key got its own Secret and its hash is the one published.
    let sample = key_secret(&client, ns, "key-04242").await?;
    let value = generated_key(&sample, KEY_DATA_CURRENT).context("sample key")?;
    ensure!(snapshot.secrets.key_hashes[&format!("{ns}/key-04242")][0].sha256 == hash_key(&value));
    Ok(())
}

/// Creates every LLMRoute or VirtualKey manifest, 32 at a time.
async fn create_all(
    client: &Client,
    namespace: &str,
    manifests: impl Iterator<Item = serde_json::Value>,
) -> Result<()> {
    use futures::StreamExt as _;
    let results: Vec<Result<()>> = futures::stream::iter(manifests)
        .map(|manifest| async move {
            let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "LLMRoute" => {
                    let object: LLMRoute = serde_json::from_value(manifest)?;
                    Api::<LLMRoute>::namespaced(client.clone(), namespace)
                        .create(&PostParams::default(), &object)
                        .await?;
                }
                "VirtualKey" => {
                    let object: VirtualKey = serde_json::from_value(manifest)?;
                    Api::<VirtualKey>::namespaced(client.clone(), namespace)
                        .create(&PostParams::default(), &object)
                        .await?;
                }
                other => anyhow::bail!("create_all does not handle {other}"),
            }
            Ok(())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}
