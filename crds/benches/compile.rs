//! Benchmark of the compiler at scale: compile time, published size and load time of the snapshot for
//! 1,000 routes + 10,000 keys and 2,000 routes + 50,000 keys. Run with
//! `cargo bench -p sluice-crds --bench compile`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use sluice_crds::compile::{compile, synthetic::Synthetic};
use sluice_crds::config::{
    GatewayConfig, GatewaySecrets, Published, join_halves, load_half, publish_snapshot, shard_key,
};

/// Measured runs per size; the table shows the median and the fastest.
const ROUNDS: usize = 7;
const SIZES: [(usize, usize); 2] = [(1_000, 10_000), (2_000, 50_000)];

fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Sluice compiler benchmark ({ROUNDS} rounds each, median / fastest)"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| routes | keys | compile | publish (gzip + shard) | load (verify + decode) | config JSON → gzip (shards) | secrets JSON → gzip (shards) |"
    )?;
    writeln!(out, "|---:|---:|---|---|---|---|---|")?;
    for (routes, keys) in SIZES {
        let synthetic = Synthetic::new("default", routes, keys);
        let inputs = synthetic.inputs(chrono::Utc::now());
        let compile_times = measure(|| compile(&inputs));
        let compiled = compile(&inputs);
        ensure!(
            compiled.outcomes.values().all(|o| o.published()),
            "every synthetic resource must compile"
        );

        let publish_times = measure(|| publish_snapshot(&compiled.snapshot));
        let (config, secrets) = publish_snapshot(&compiled.snapshot).context("publishing")?;
        let load_times = measure(|| load(&config, &secrets));
        let loaded = load(&config, &secrets)?;
        ensure!(
            loaded == compiled.snapshot,
            "the published snapshot must load back unchanged"
        );

        let config_json = serde_json::to_vec(&compiled.snapshot.config)?.len();
        let secrets_json = serde_json::to_vec(&compiled.snapshot.secrets)?.len();
        writeln!(
            out,
            "| {routes} | {keys} | {} | {} | {} | {} → {} ({}) | {} → {} ({}) |",
            summary(&compile_times),
            summary(&publish_times),
            summary(&load_times),
            mib(config_json),
            mib(compressed(&config)),
            config.shards.len(),
            mib(secrets_json),
            mib(compressed(&secrets)),
            secrets.shards.len(),
        )?;
    }
    Ok(())
}

fn measure<T>(mut run: impl FnMut() -> T) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(run());
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn summary(sorted: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    format!(
        "{:.1} ms / {:.1} ms",
        ms(sorted[sorted.len() / 2]),
        ms(sorted[0])
    )
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn compressed(half: &Published) -> usize {
    half.shards.iter().map(Vec::len).sum()
}

/// What a gateway does on reload: read both halves, check every shard and the content hash.
fn load(config: &Published, secrets: &Published) -> anyhow::Result<sluice_crds::config::Snapshot> {
    let shard = |half: &Published| {
        let shards = half.shards.clone();
        move |key: &str| {
            (0..shards.len())
                .find(|&i| shard_key(i) == key)
                .map(|i| shards[i].clone())
        }
    };
    let config_half = load_half::<GatewayConfig>(
        "config",
        Some(config.index_json().as_bytes()),
        shard(config),
    )?;
    let secrets_half = load_half::<GatewaySecrets>(
        "secrets",
        Some(secrets.index_json().as_bytes()),
        shard(secrets),
    )?;
    Ok(join_halves(config_half, secrets_half)?)
}
