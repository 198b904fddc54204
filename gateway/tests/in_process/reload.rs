//! Configuration reloads: atomic swaps under load, in-flight requests keep their snapshot, broken
//! snapshots are refused, kubelet's symlink swaps are picked up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_crds::config::{Published, Snapshot, publish_snapshot, shard_key};
use sluice_gateway::ConfigSource;
use sluice_gateway::config::Source;
use sluice_gateway::config::directory::DirectorySource;

use crate::support::*;

fn fixture(upstream: &Upstream, aliases: &[&str]) -> Fixture {
    let mut chat = route(
        "team/chat",
        "gpt-4o",
        vec![openai_backend("primary", upstream)],
    );
    chat.aliases = aliases.iter().map(|a| (*a).to_owned()).collect();
    Fixture::default().with_route(chat)
}

async fn wait_for_hash(gw: &TestGateway, hash: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = gw.readyz().await;
        if body["configHash"] == hash {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hash {hash} not served within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_snapshot_it_started_with() {
    let slow = Upstream::start(|_| {
        Reply::Delayed(
            Duration::from_millis(600),
            Box::new(Reply::Json(200, openai_completion("old"))),
        )
    })
    .await;
    let gw = TestGateway::start(fixture(&slow, &[]).snapshot()).await;
    let in_flight = {
        let request = gw.post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"));
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let without_route = Fixture::default().snapshot();
    gw.gateway
        .store()
        .apply(&without_route, Source::Static)
        .unwrap();
    assert_eq!(
        gw.chat(&chat_body("gpt-4o")).await.0,
        404,
        "new requests see the new snapshot"
    );
    let response = in_flight.await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the request that started before the swap completes"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "old");
}

#[tokio::test]
async fn a_broken_snapshot_is_rejected_and_the_previous_keeps_serving() {
    let upstream = Upstream::openai("ok").await;
    let good = fixture(&upstream, &[]).snapshot();
    let gw = TestGateway::start(good.clone()).await;
    let mut broken = fixture(&upstream, &["also"]);
    broken.secrets.credentials.clear();
    let error = gw
        .gateway
        .store()
        .apply(&broken.snapshot(), Source::Static)
        .unwrap_err();
    assert!(
        error.contains("credential team/provider/api-key is missing"),
        "{error}"
    );

    assert_eq!(gw.chat(&chat_body("gpt-4o")).await.0, 200);
    let (status, ready) = gw.readyz().await;
    assert_eq!(
        status, 200,
        "still ready: the previous configuration serves"
    );
    assert_eq!(ready["configHash"], good.hash);
    assert!(
        ready["lastError"].as_str().unwrap().contains("credential"),
        "{ready}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_config_reload_total{source="static",result="error"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(r#"sluice_config_info{{hash="{}"}} 1"#, good.hash)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_during_ten_seconds_of_load_fail_no_request() {
    let upstream = Upstream::openai("ok").await;
    let snapshots = [
        fixture(&upstream, &["a"]).snapshot(),
        fixture(&upstream, &["b"]).snapshot(),
    ];
    let gw = Arc::new(TestGateway::start(snapshots[0].clone()).await);
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load_until = Instant::now() + Duration::from_secs(10);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (gw, ok, failed) = (gw.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < load_until {
                    let succeeded = match gw
                        .post("/v1/chat/completions", APP_KEY, &chat_body("gpt-4o"))
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 200 => response.bytes().await.is_ok(),
                        _ => false,
                    };
                    let counter = if succeeded { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 1..=50 {
        tokio::time::sleep(Duration::from_millis(190)).await;
        let applied = gw
            .gateway
            .store()
            .apply(&snapshots[i % 2], Source::Static)
            .unwrap();
        assert_eq!(applied, sluice_gateway::config::Applied::Swapped);
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 500, "only {ok} requests in 10 s");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_config_reload_total{source="static",result="success"} 51"#),
        "{metrics}"
    );
}

/// Writes one half like kubelet does: a fresh timestamped directory, a `..data_tmp` symlink renamed over
/// `..data`, and per-key symlinks through `..data`.
fn kubelet_write(dir: &Path, half: &Published, generation: usize) {
    let name = format!("..2025_01_01_00_00_00.{generation:09}");
    let data = dir.join(&name);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("index.json"), half.index_json()).unwrap();
    let mut keys = vec!["index.json".to_owned()];
    for (i, shard) in half.shards.iter().enumerate() {
        std::fs::write(data.join(shard_key(i)), shard).unwrap();
        keys.push(shard_key(i));
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&name, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for key in keys {
        let link = dir.join(&key);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
        }
    }
}

fn publish(snapshot: &Snapshot) -> (Published, Published) {
    publish_snapshot(snapshot).unwrap()
}

#[tokio::test]
async fn kubelet_symlink_swaps_are_picked_up_and_half_updates_wait() {
    let upstream = Upstream::openai("ok").await;
    let (config_dir, secrets_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = fixture(&upstream, &["a"]).snapshot();
    let b = fixture(&upstream, &["b"]).snapshot();
    let (a_config, a_secrets) = publish(&a);
    kubelet_write(config_dir.path(), &a_config, 1);
    kubelet_write(secrets_dir.path(), &a_secrets, 1);
    let mut source =
        DirectorySource::new(config_dir.path().to_owned(), secrets_dir.path().to_owned());
    source.debounce = Duration::from_millis(50);
    source.resync = Duration::from_millis(500);
    let gw = TestGateway::start_source(ConfigSource::Directory(source), |_| {}).await;
    wait_for_hash(&gw, &a.hash, Duration::from_secs(5)).await;
    assert_eq!(gw.chat(&chat_body("a")).await.0, 200);

    let (b_config, b_secrets) = publish(&b);
    kubelet_write(config_dir.path(), &b_config, 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, ready) = gw.readyz().await;
    assert_eq!(
        (status, ready["configHash"].as_str()),
        (200, Some(a.hash.as_str())),
        "half an update is not served"
    );
    assert!(
        ready["lastError"].is_null(),
        "a half update is not an error (yet): {ready}"
    );
    assert!(
        gw.metrics()
            .await
            .contains(r#"sluice_config_reload_total{source="directory",result="incomplete"}"#)
    );

    kubelet_write(secrets_dir.path(), &b_secrets, 2);
    wait_for_hash(&gw, &b.hash, Duration::from_secs(3)).await;
    assert_eq!(gw.chat(&chat_body("b")).await.0, 200);
    assert_eq!(gw.chat(&chat_body("a")).await.0, 404);

    // A consistent but invalid snapshot (its credential is gone) is refused; b keeps serving.
    let mut invalid = fixture(&upstream, &["c"]);
    invalid.secrets.credentials.clear();
    let (c_config, c_secrets) = publish(&invalid.snapshot());
    kubelet_write(config_dir.path(), &c_config, 3);
    kubelet_write(secrets_dir.path(), &c_secrets, 3);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, ready) = gw.readyz().await;
        if ready["lastError"].is_string() {
            assert_eq!(ready["configHash"], b.hash);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the invalid snapshot was never reported: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.chat(&chat_body("b")).await.0, 200);

    // Putting the served snapshot back clears the report.
    kubelet_write(config_dir.path(), &b_config, 4);
    kubelet_write(secrets_dir.path(), &b_secrets, 4);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gw.readyz().await.1["lastError"].is_null() {
        assert!(
            Instant::now() < deadline,
            "the error report was never cleared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn before_the_first_configuration_the_gateway_is_not_ready_and_says_why() {
    let (config_dir, secrets_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = DirectorySource::new(config_dir.path().to_owned(), secrets_dir.path().to_owned());
    let gw = TestGateway::start_source(ConfigSource::Directory(source), |_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let ready = loop {
        let (status, ready) = gw.readyz().await;
        assert_eq!(status, 503);
        if ready["lastError"].is_string() {
            break ready;
        }
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        ready["lastError"]
            .as_str()
            .unwrap()
            .contains("index.json is missing"),
        "{ready}"
    );
    assert_eq!(ready["ready"], false);
    let (status, body) = gw.chat(&chat_body("gpt-4o")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "not_ready");
}

#[tokio::test]
async fn a_route_removed_by_a_reload_loses_its_cached_answers() {
    let upstream = Upstream::openai("fresh").await;
    let mut cached = fixture(&upstream, &[]);
    for route in &mut cached.config.routes {
        route.cache = Some(sluice_crds::config::CacheConfig {
            ttl_ms: 600_000,
            scope: sluice_crds::v1alpha1::CacheScope::Key,
            max_entries: 100,
        });
    }
    let with_cache = cached.snapshot();
    let gw = TestGateway::start(with_cache.clone()).await;
    let cache_status = |response: &reqwest::Response| {
        response.headers()["x-sluice-cache"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let body = chat_body("gpt-4o");
    let first = gw
        .post("/v1/chat/completions", APP_KEY, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_status(&first), "miss");
    let second = gw
        .post("/v1/chat/completions", APP_KEY, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_status(&second), "hit");

    let store = gw.gateway.store();
    store
        .apply(&Fixture::default().snapshot(), Source::Static)
        .unwrap();
    store.apply(&with_cache, Source::Static).unwrap();
    let after = gw
        .post("/v1/chat/completions", APP_KEY, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cache_status(&after),
        "miss",
        "the route's entries went with the route"
    );
}
