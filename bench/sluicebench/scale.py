"""Scale figures: Sluice with 10 / 10,000 / 50,000 virtual keys (and 2,000 routes at the top), in local
mode — time to first ready, time for a changed folder to be served (parse + compile + swap), idle memory,
and whether the per-request cost stays flat — plus the compiler's own benchmark from sluice-crds (compile,
publish and load of the snapshot the operator would write)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from . import loadgen
from .procs import Proc, cpu_seconds, free_port, process_tree, rss_kb
from .targets import CHAT_PATH, UPSTREAM_MODEL, chat_body
from .upstreams import PROVIDER_KEY, Upstreams

# (keys, routes) per step; the last one is the issue's "50,000 keys and 2,000 routes".
STEPS = [(10, 1), (10_000, 1), (50_000, 2_000)]


def key_value(index: int) -> str:
    return f"sk-scale-{index:08d}-{'0123456789abcdef' * 2}"


def write_manifests(folder: Path, keys: int, routes: int, nginx_url: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "scale", "namespace": "bench"},
        "stringData": {"provider": PROVIDER_KEY, **{f"k{i}": key_value(i) for i in range(keys)}},
    }
    docs = [secret]
    for i in range(routes):
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "LLMRoute",
                "metadata": {"name": f"scale-{i}", "namespace": "bench"},
                "spec": {
                    "model": f"scale-{i}",
                    "backends": [
                        {
                            "name": "mock",
                            "provider": "openai",
                            "model": UPSTREAM_MODEL,
                            "endpoint": nginx_url,
                            "credentialsRef": {"name": "scale", "key": "provider"},
                        }
                    ],
                },
            }
        )
    for i in range(keys):
        docs.append(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "VirtualKey",
                "metadata": {"name": f"key-{i}", "namespace": "bench"},
                "spec": {"secretRef": {"name": "scale", "key": f"k{i}"}},
            }
        )
    (folder / "scale.yaml").write_text("\n---\n".join(json.dumps(doc, separators=(",", ":")) for doc in docs) + "\n")


def _readyz(admin_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _wait_hash(admin_port: int, proc: Proc, different_from: str | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"gateway exited:\n{proc.log_tail()}")
        ready = _readyz(admin_port)
        if ready and ready.get("ready") and ready.get("configHash") and ready["configHash"] != different_from:
            return ready["configHash"]
        time.sleep(0.005)
    raise RuntimeError(f"gateway served no new configuration within {timeout}s:\n{proc.log_tail()}")


def run_step(
    gateway_binary: str, wrk_binary: str, upstreams: Upstreams, workdir: Path, keys: int, routes: int, duration: float, log
) -> dict:
    folder = workdir / f"scale-{keys}-{routes}"
    nginx_url = f"http://127.0.0.1:{upstreams.nginx_port}/v1"
    write_manifests(folder, keys, routes, nginx_url)
    size = (folder / "scale.yaml").stat().st_size
    port, admin = free_port(), free_port()
    proc = Proc(
        name=f"sluice-scale-{keys}",
        argv=[
            gateway_binary,
            "--local",
            str(folder),
            "--local-state",
            str(workdir / f"scale-{keys}-state.json"),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin-listen",
            f"127.0.0.1:{admin}",
        ],
        log=workdir / f"sluice-scale-{keys}.log",
        env={"RUST_LOG": "warn"},
    )
    started = time.monotonic()
    proc.start()
    try:
        first_hash = _wait_hash(admin, proc, None, timeout=300)
        ready_seconds = time.monotonic() - started
        time.sleep(1)
        idle_kb = rss_kb(process_tree(proc.pid))

        # Reload: one more key (with its own Secret) in a second file; timed from the write to the new
        # hash being served.
        extra_docs = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "scale-extra", "namespace": "bench"},
                "stringData": {"k": key_value(keys + 1)},
            },
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "VirtualKey",
                "metadata": {"name": "key-extra", "namespace": "bench"},
                "spec": {"secretRef": {"name": "scale-extra", "key": "k"}},
            },
        ]
        staged = folder / ".extra.tmp"
        staged.write_text("\n---\n".join(json.dumps(doc) for doc in extra_docs) + "\n")
        reload_started = time.monotonic()
        staged.rename(folder / "extra.yaml")
        _wait_hash(admin, proc, first_hash, timeout=300)
        reload_seconds = time.monotonic() - reload_started

        middle = key_value(keys // 2)
        request = loadgen.Request(
            "127.0.0.1", port, CHAT_PATH, {"Authorization": f"Bearer {middle}"}, chat_body(f"scale-{routes // 2}", "json")
        )
        loadgen.wrk(wrk_binary, request, 4, 1.0)  # warm-up
        c1 = loadgen.wrk(wrk_binary, request, 1, duration)
        cpu_before = cpu_seconds(process_tree(proc.pid))
        c64 = loadgen.wrk(wrk_binary, request, 64, duration)
        cpu_used = cpu_seconds(process_tree(proc.pid)) - cpu_before
        loaded_kb = rss_kb(process_tree(proc.pid))
    finally:
        proc.stop()
    record = {
        "keys": keys,
        "routes": routes,
        "manifest_bytes": size,
        "ready_seconds": ready_seconds,
        "reload_seconds": reload_seconds,
        "rss_idle_kb": idle_kb,
        "rss_after_load_kb": loaded_kb,
        "c1_p50_us": c1["latency_us"]["p50"],
        "c1_p99_us": c1["latency_us"]["p99"],
        "c1_failed": c1["failed"],
        "c64_rps": c64["rps"],
        "c64_failed": c64["failed"],
        "cpu_us_per_request": cpu_used / c64["ok"] * 1e6 if c64["ok"] else None,
    }
    log(
        f"  {keys:>6} keys {routes:>5} routes: ready {ready_seconds:.2f} s, reload {reload_seconds:.2f} s, "
        f"RSS {idle_kb / 1024:.1f} MB, c=1 p50 {record['c1_p50_us']} µs, c=64 {record['c64_rps']:.0f} req/s, "
        f"cpu {record['cpu_us_per_request'] or 0:.1f} µs/req"
    )
    return record


def compiler_bench(repo: Path, log) -> str | None:
    """Runs sluice-crds' compile benchmark (if present) and returns its Markdown table."""
    if not (repo / "crds" / "benches" / "compile.rs").exists():
        return None
    log("  cargo bench -p sluice-crds --bench compile")
    done = subprocess.run(
        ["cargo", "bench", "-q", "-p", "sluice-crds", "--bench", "compile"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        log(f"  compile bench failed: {done.stderr[-600:]}")
        return None
    return done.stdout.strip()
