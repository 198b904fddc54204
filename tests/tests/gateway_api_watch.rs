//! The gateway's fast configuration path against a real kube-apiserver: it watches its ConfigMap and
//! Secret (selected by the `sluice.dev/gateway` label) with an identity that may only read those kinds in
//! its namespace, serves each new snapshot within a second, never combines halves of two snapshots, and
//! keeps the last good configuration when a published one is invalid or half-deleted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_crds::compile::compile;
use sluice_crds::config::{
    GATEWAY_LABEL, INDEX_KEY, PART_LABEL, Published, Snapshot, object_name, publish_snapshot,
    shard_key,
};
use sluice_crds::manifests::parse_str;
use sluice_gateway::config::kube::ApiSource;
use sluice_gateway::{ConfigSource, Gateway, GatewayOptions};
use sluice_tests::harness::{ControlPlane, NON_ADMIN_USER, TestNamespace, wait_for};
use sluice_tests::mock::MockProvider;

const FIELD_MANAGER: &str = "sluice-gateway-test";
const APP_KEY: &str = "sk-sluice-api-watch-app-0123456789abcdefghijk";
const PROVIDER_KEY: &str = "sk-upstream-api-watch-provider";

/// A snapshot with one route to the mock and the app key, compiled from manifests like the operator does.
fn snapshot(mock: &MockProvider, gateway: &str, aliases: &str) -> Result<Snapshot> {
    let manifests = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: providers, namespace: team}}
stringData: {{key: {PROVIDER_KEY}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app, namespace: team}}
stringData: {{key: {APP_KEY}}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: team}}
spec: {{gateway: {gateway}, secretRef: {{name: app, key: key}}}}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {{name: chat, namespace: team}}
spec:
  gateway: {gateway}
  model: gpt-4o
  aliases: [{aliases}]
  backends:
    - {{name: openai, provider: openai, model: gpt-4o, endpoint: "{}", credentialsRef: {{name: providers, key: key}}}}
"#,
        mock.openai_base_url()
    );
    let parsed = parse_str(std::path::Path::new("api-watch.yaml"), &manifests)?;
    Ok(compile(&parsed.inputs(gateway, chrono::Utc::now())).snapshot)
}

fn labels(gateway: &str, part: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (GATEWAY_LABEL.to_owned(), gateway.to_owned()),
        (PART_LABEL.to_owned(), part.to_owned()),
    ])
}

/// Writes the ConfigMap half as the operator does: index as text, shards as binary data.
async fn apply_config(
    client: &Client,
    namespace: &str,
    gateway: &str,
    half: &Published,
) -> Result<()> {
    let name = object_name(gateway, "config", 0);
    let binary: BTreeMap<String, ByteString> = half
        .shards
        .iter()
        .enumerate()
        .map(|(i, shard)| (shard_key(i), ByteString(shard.clone())))
        .collect();
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels(gateway, "config")),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(INDEX_KEY.to_owned(), half.index_json())])),
        binary_data: Some(binary),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config_map),
        )
        .await?;
    Ok(())
}

/// Writes the Secret half.
async fn apply_secrets(
    client: &Client,
    namespace: &str,
    gateway: &str,
    half: &Published,
) -> Result<()> {
    let name = object_name(gateway, "secrets", 0);
    let mut data: BTreeMap<String, ByteString> = half
        .shards
        .iter()
        .enumerate()
        .map(|(i, shard)| (shard_key(i), ByteString(shard.clone())))
        .collect();
    data.insert(
        INDEX_KEY.to_owned(),
        ByteString(half.index_json().into_bytes()),
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels(gateway, "secrets")),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

async fn publish(
    client: &Client,
    namespace: &str,
    gateway: &str,
    snapshot: &Snapshot,
) -> Result<()> {
    let (config, secrets) = publish_snapshot(snapshot)?;
    apply_config(client, namespace, gateway, &config).await?;
    apply_secrets(client, namespace, gateway, &secrets).await
}

/// Lets the non-admin identity read ConfigMaps and Secrets in `namespace`, and nothing else.
async fn grant_gateway_read(client: &Client, namespace: &str) -> Result<()> {
    let role = Role {
        metadata: ObjectMeta {
            name: Some("sluice-gateway".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into(), "secrets".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("sluice-gateway".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "sluice-gateway".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: NON_ADMIN_USER.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        }]),
    };
    let params = PatchParams::apply(FIELD_MANAGER);
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch("sluice-gateway", &params, &Patch::Apply(&role))
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch("sluice-gateway", &params, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

struct Running {
    gateway: Gateway,
    http: reqwest::Client,
}

impl Running {
    async fn readiness(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("http://{}/readyz", self.gateway.admin_addr()))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn wait_for_hash(&self, hash: &str, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        wait_for(&format!("hash {hash}"), timeout, || async {
            let readiness = self.readiness().await?;
            Ok((readiness["configHash"] == hash).then_some(()))
        })
        .await?;
        Ok(started.elapsed())
    }

    async fn chat(&self, model: &str) -> Result<u16> {
        let response = self
            .http
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gateway.addr()
            ))
            .bearer_auth(APP_KEY)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

#[tokio::test]
async fn the_api_watch_serves_updates_fast_and_keeps_the_last_good_configuration() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let admin = control_plane.admin_client().await?;
    let namespace = TestNamespace::new(&admin, "gateway-watch").await?;
    let ns = namespace.name().to_owned();
    let gateway_name = ns.clone();
    grant_gateway_read(&admin, &ns).await?;
    let mock = MockProvider::start().await?;
    mock.expect_api_key(PROVIDER_KEY);

    let first = snapshot(&mock, &gateway_name, "first")?;
    ensure!(
        first.config.routes.len() == 1 && first.config.keys.len() == 1,
        "the fixture did not compile: {first:?}"
    );
    publish(&admin, &ns, &gateway_name, &first).await?;

    let user = control_plane.user_client().await?;
    let options = GatewayOptions::new("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?);
    let source = ConfigSource::Api(ApiSource::new(user, &ns, &gateway_name));
    let running = Running {
        gateway: Gateway::start(options, source).await?,
        http: reqwest::Client::new(),
    };
    running
        .wait_for_hash(&first.hash, Duration::from_secs(20))
        .await?;
    ensure!(running.chat("first").await? == 200);

    // A new alias: served well within a second of the second half being written.
    let second = snapshot(&mock, &gateway_name, "second")?;
    publish(&admin, &ns, &gateway_name, &second).await?;
    let took = running
        .wait_for_hash(&second.hash, Duration::from_secs(5))
        .await?;
    eprintln!("api watch: new snapshot served {took:?} after it was written");
    ensure!(took < Duration::from_secs(1), "took {took:?}");
    ensure!(running.chat("second").await? == 200 && running.chat("first").await? == 404);

    // Only the ConfigMap of the next snapshot: the halves disagree, so nothing changes and nothing is wrong.
    let third = snapshot(&mock, &gateway_name, "third")?;
    let (third_config, third_secrets) = publish_snapshot(&third)?;
    apply_config(&admin, &ns, &gateway_name, &third_config).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let readiness = running.readiness().await?;
    ensure!(
        readiness["configHash"] == second.hash && readiness["lastError"].is_null(),
        "{readiness}"
    );
    apply_secrets(&admin, &ns, &gateway_name, &third_secrets).await?;
    running
        .wait_for_hash(&third.hash, Duration::from_secs(5))
        .await?;

    // Revocation: disabling the key reaches the gateway fast.
    let mut revoked = third.config.clone();
    revoked.keys[0].disabled = true;
    let revoked = Snapshot::new(revoked, third.secrets.clone());
    let started = Instant::now();
    publish(&admin, &ns, &gateway_name, &revoked).await?;
    wait_for("the key to be refused", Duration::from_secs(5), || async {
        Ok((running.chat("third").await? == 401).then_some(()))
    })
    .await?;
    let revocation = started.elapsed();
    eprintln!("api watch: a disabled key was refused {revocation:?} after the write");
    ensure!(
        revocation < Duration::from_secs(2),
        "revocation took {revocation:?}"
    );

    // A consistent but invalid snapshot (its provider credential is missing) is refused loudly.
    let mut broken_secrets = third.secrets.clone();
    broken_secrets.credentials.clear();
    let broken = Snapshot::new(third.config.clone(), broken_secrets);
    publish(&admin, &ns, &gateway_name, &broken).await?;
    wait_for(
        "the invalid snapshot to be reported",
        Duration::from_secs(5),
        || async {
            Ok(running.readiness().await?["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("credential"))
                .then_some(()))
        },
    )
    .await?;
    let readiness = running.readiness().await?;
    ensure!(
        readiness["configHash"] == revoked.hash && readiness["ready"] == true,
        "{readiness}"
    );

    // Deleting the published objects does not take the configuration away.
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .delete(
            &object_name(&gateway_name, "config", 0),
            &DeleteParams::default(),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(running.readiness().await?["configHash"] == revoked.hash);

    // Republishing a good snapshot recovers, and the error clears.
    publish(&admin, &ns, &gateway_name, &third).await?;
    running
        .wait_for_hash(&third.hash, Duration::from_secs(5))
        .await?;
    ensure!(running.readiness().await?["lastError"].is_null());
    ensure!(running.chat("third").await? == 200);
    let metrics = running
        .http
        .get(format!("http://{}/metrics", running.gateway.admin_addr()))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains(r#"sluice_config_reload_total{source="api",result="error"}"#),
        "{metrics}"
    );
    ensure!(
        metrics.contains(&format!(r#"sluice_config_info{{hash="{}"}} 1"#, third.hash)),
        "{metrics}"
    );
    running.gateway.shutdown().await;
    drop(namespace);
    Ok(())
}

#[tokio::test]
async fn the_gateway_identity_may_read_only_its_configuration_kinds() -> Result<()> {
    let control_plane = ControlPlane::shared()?;
    let admin = control_plane.admin_client().await?;
    let namespace = TestNamespace::new(&admin, "gateway-rbac").await?;
    grant_gateway_read(&admin, namespace.name()).await?;
    let user = control_plane.user_client().await?;
    let allowed = Api::<Secret>::namespaced(user.clone(), namespace.name())
        .list(&Default::default())
        .await;
    ensure!(
        allowed.is_ok(),
        "reading Secrets in its namespace: {allowed:?}"
    );
    let elsewhere = Api::<Secret>::namespaced(user.clone(), "default")
        .list(&Default::default())
        .await;
    ensure!(
        elsewhere.is_err(),
        "Secrets of another namespace must be forbidden"
    );
    let write = Api::<ConfigMap>::namespaced(user, namespace.name())
        .patch(
            "x",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&ConfigMap::default()),
        )
        .await;
    ensure!(write.is_err(), "writing ConfigMaps must be forbidden");
    Ok(())
}
