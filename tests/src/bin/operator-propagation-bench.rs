//! Measures the operator: time from a resource change to the updated ConfigMap (p50/p99 over a run of
//! changes, with few and with many existing routes), and compile time plus published size for a large
//! gateway. Prints a Markdown report.
//!
//! `cargo run --release -p sluice-tests --bin operator-propagation-bench [-- --changes 200]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;
use sluice_crds::compile::compile;
use sluice_crds::compile::synthetic::Synthetic;
use sluice_crds::config::{GATEWAY_LABEL, GatewayConfig, INDEX_KEY, PART_LABEL, publish_snapshot};
use sluice_crds::v1alpha1::LLMRoute;
use sluice_operator::{Operator, Settings};
use sluice_tests::harness::{ControlPlane, FIELD_MANAGER, TestNamespace, install_crds, wait_for};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Changes measured per scenario.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Existing routes per scenario.
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    routes: Vec<usize>,
    /// Size of the compile measurement: routes and keys.
    #[arg(long, default_value_t = 1_000)]
    compile_routes: usize,
    #[arg(long, default_value_t = 10_000)]
    compile_keys: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut report = String::from("# Operator measurements\n\n");
    report.push_str(&compile_report(args.compile_routes, args.compile_keys)?);

    let control_plane = ControlPlane::shared()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = control_plane.admin_client().await?;
        install_crds(&client).await?;
        report.push_str("\n## Propagation: resource change → updated ConfigMap\n\n");
        report.push_str(
            "| existing routes | changes | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n",
        );
        for &routes in &args.routes {
            let samples = propagation(&client, routes, args.changes).await?;
            report.push_str(&format!(
                "| {routes} | {} | {} | {} | {} | {} |\n",
                samples.len(),
                ms(percentile(&samples, 0.50)),
                ms(percentile(&samples, 0.90)),
                ms(percentile(&samples, 0.99)),
                ms(percentile(&samples, 1.0)),
            ));
        }
        anyhow::Ok(())
    })?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.as_bytes())?;
    Ok(())
}

/// Compile and encoding time, and published sizes, for a synthetic gateway (no API server involved).
fn compile_report(routes: usize, keys: usize) -> Result<String> {
    let synthetic = Synthetic::new("bench", routes, keys);
    let now = Utc::now();
    let mut compile_times = Vec::new();
    let mut publish_times = Vec::new();
    let mut last = None;
    for _ in 0..7 {
        let started = Instant::now();
        let compiled = compile(&synthetic.inputs(now));
        compile_times.push(started.elapsed());
        let started = Instant::now();
        let halves = publish_snapshot(&compiled.snapshot)?;
        publish_times.push(started.elapsed());
        last = Some((compiled, halves));
    }
    let (compiled, (config, secrets)) = last.context("no run")?;
    let config_json = serde_json::to_vec(&compiled.snapshot.config)?.len();
    let secrets_json = serde_json::to_vec(&compiled.snapshot.secrets)?.len();
    let size = |shards: &[Vec<u8>]| shards.iter().map(Vec::len).sum::<usize>();
    let excluded = compiled
        .outcomes
        .values()
        .filter(|o| !o.published())
        .count();
    if excluded > 0 {
        bail!("{excluded} synthetic resources did not compile");
    }
    Ok(format!(
        "## Compile: {routes} routes + {keys} keys\n\n\
         | step | median of 7 | min |\n|---|---|---|\n\
         | compile (pure) | {} | {} |\n\
         | encode (JSON + gzip + shard, both halves) | {} | {} |\n\n\
         | half | JSON | published (gzip) | objects |\n|---|---|---|---|\n\
         | config (ConfigMaps) | {} KiB | {} KiB | {} |\n\
         | secrets (Secrets) | {} KiB | {} KiB | {} |\n",
        ms(percentile(&compile_times, 0.5)),
        ms(percentile(&compile_times, 0.0)),
        ms(percentile(&publish_times, 0.5)),
        ms(percentile(&publish_times, 0.0)),
        config_json / 1024,
        size(&config.shards) / 1024,
        config.shards.len(),
        secrets_json / 1024,
        size(&secrets.shards) / 1024,
        secrets.shards.len(),
    ))
}

/// Creates `routes` routes, runs an operator, then changes one route at a time and measures until the
/// published config shows the change.
async fn propagation(client: &Client, routes: usize, changes: usize) -> Result<Vec<Duration>> {
    let namespace = TestNamespace::new(client, &format!("bench-{routes}")).await?;
    let (ns, gateway) = (namespace.name().to_owned(), namespace.name().to_owned());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let provider = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-bench-0123456789"}});
    secrets
        .patch(
            "provider-keys",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&provider),
        )
        .await?;
    let api: Api<LLMRoute> = Api::namespaced(client.clone(), &ns);
    let manifests: Vec<LLMRoute> = (0..routes)
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "LLMRoute",
                "metadata": {"name": format!("route-{i:04}"), "namespace": ns},
                "spec": {"gateway": gateway, "model": format!("model-{i:04}"), "backends": [{
                    "name": "openai", "provider": "openai", "model": "gpt-4o-mini",
                    "credentialsRef": {"name": "provider-keys", "key": "openai"}}]},
            }))
        })
        .collect::<Result<_, _>>()?;
    let params = PostParams::default();
    let created: Vec<Result<LLMRoute, kube::Error>> =
        futures::stream::iter(manifests.iter().map(|route| api.create(&params, route)))
            .buffer_unordered(32)
            .collect()
            .await;
    created.into_iter().collect::<Result<Vec<_>, _>>()?;

    let mut settings = Settings::for_gateway(&gateway, &ns);
    settings.watch_namespaces = vec![ns.clone()];
    settings.metrics_addr = ([127, 0, 0, 1], 0).into();
    settings.identity = Some(format!("bench-{routes}"));
    let operator = Operator::bind(settings, client.clone()).await?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(operator.run(shutdown.clone()));

    // Watch the published ConfigMaps and keep the latest decoded config.
    let (latest_sender, latest) = tokio::sync::watch::channel(None::<GatewayConfig>);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let selector = watcher::Config::default()
        .labels(&format!("{GATEWAY_LABEL}={gateway},{PART_LABEL}=config"));
    let watch_task = tokio::spawn(async move {
        let mut files: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut events = std::pin::pin!(
            watcher(config_maps, selector)
                .default_backoff()
                .applied_objects()
        );
        while let Ok(Some(config_map)) = events.try_next().await {
            let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for (key, value) in config_map.data.iter().flatten() {
                entries.insert(key.clone(), value.clone().into_bytes());
            }
            for (key, value) in config_map.binary_data.iter().flatten() {
                entries.insert(key.clone(), value.0.clone());
            }
            files.insert(
                config_map.metadata.name.clone().unwrap_or_default(),
                entries,
            );
            let all: BTreeMap<&String, &Vec<u8>> = files.values().flatten().collect();
            let loaded = sluice_crds::config::load_half::<GatewayConfig>(
                "config",
                all.get(&INDEX_KEY.to_owned()).map(|v| v.as_slice()),
                |key| all.get(&key.to_owned()).map(|v| (*v).clone()),
            );
            if let Ok((_, config)) = loaded {
                latest_sender.send_replace(Some(config));
            }
        }
    });

    let wait_until = |check: Box<dyn Fn(&GatewayConfig) -> bool + Send + Sync>| {
        let mut latest = latest.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(120),
                latest.wait_for(|config| config.as_ref().is_some_and(&check)),
            )
            .await
            .context("timed out waiting for the published config")?
            .context("the config watch ended")?;
            anyhow::Ok(())
        }
    };
    wait_until(Box::new(move |config| config.routes.len() == routes)).await?;
    // Let the status writer finish the initial statuses so they do not compete with the changes.
    wait_for("initial statuses", Duration::from_secs(300), || async {
        let listed = api.list(&Default::default()).await?.items;
        Ok(listed
            .iter()
            .all(|r| r.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .then_some(()))
    })
    .await?;

    let mut samples = Vec::with_capacity(changes);
    for change in 0..changes {
        let index = (change * 7919) % routes;
        let name = format!("route-{index:04}");
        let alias = format!("change-{change}");
        let patch = json!({"spec": {"aliases": [alias.clone()]}});
        let started = Instant::now();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let id = format!("{ns}/{name}");
        wait_until(Box::new(move |config| {
            config
                .routes
                .iter()
                .any(|r| r.id == id && r.aliases == [alias.clone()])
        }))
        .await?;
        samples.push(started.elapsed());
    }
    shutdown.cancel();
    running.await??;
    watch_task.abort();
    eprintln!("{routes} routes: measured {} changes", samples.len());
    Ok(samples)
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1_000.0)
}
