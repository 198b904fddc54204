"""Command line of the benchmark suite: starts the mock upstreams and the targets, runs the phases,
writes results.json, the Markdown block and the chart, and (with --publish) updates docs/."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import profile, propagation, report, scale, upstreams
from .procs import load_average
from .runner import Runner, Settings, Tools
from .targets import Direct, LiteLLM, Portkey, Sluice, Target

REPO = Path(__file__).resolve().parents[2]
ALL_TARGETS = ["direct", "sluice", "litellm", "litellm2", "portkey"]
# Numbers taken while the 1-minute load average is above this are marked as taken under load.
QUIET_LOAD = 1.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--all", action="store_true", help="everything: --soak --propagation --profile and scale")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 2 s, one rate, 200 streams, no 2-worker LiteLLM, no scale (≤ 3 min)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per figure per round (default 5)")
    parser.add_argument(
        "--rates", default="100,1000,5000", help="fixed request rates for open-loop latency (default 100,1000,5000)"
    )
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help=f"comma list of {ALL_TARGETS}")
    parser.add_argument(
        "--pin", action="store_true", help="pin latency runs: target alone on CPU 1, load generator + mock on CPU 0"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for closed-loop runs (default 1)")
    parser.add_argument("--streams", type=int, default=1000, help="open streams for the memory figure (default 1000)")
    parser.add_argument("--no-memory", action="store_true", help="skip the open-streams memory phase")
    parser.add_argument("--soak", action="store_true", help="also soak Sluice with --soak-requests requests")
    parser.add_argument("--soak-requests", type=int, default=1_000_000)
    parser.add_argument("--soak-max-seconds", type=float, default=900)
    parser.add_argument("--scale", dest="scale", action="store_true", default=None, help="run the scale phase")
    parser.add_argument("--no-scale", dest="scale", action="store_false")
    parser.add_argument("--only-scale", action="store_true", help="run only the scale phase")
    parser.add_argument("--propagation", action="store_true", help="measure key revocation propagation (apiserver)")
    parser.add_argument("--only-propagation", action="store_true", help="run only the propagation phase")
    parser.add_argument("--propagation-changes", type=int, default=100, help="disable/enable changes (default 100)")
    parser.add_argument("--operator", default=str(REPO / "target/release/sluice-operator"))
    parser.add_argument("--profile", action="store_true", help="perf-profile Sluice under c=64 load (non-stream, stream)")
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for load average < 1 first")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default target/bench/<time>)")
    parser.add_argument(
        "--report-only", type=Path, metavar="DIR", help="only regenerate results.md and the chart from DIR/results.json"
    )
    parser.add_argument("--publish", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--gateway", default=str(REPO / "target/release/sluice-gateway"))
    parser.add_argument("--mock", default=str(REPO / "target/release/sluice-mock-provider"))
    args = parser.parse_args(argv)
    if args.all:
        args.soak = args.propagation = args.profile = True
    if args.quick:
        args.rounds, args.duration = 1, 2.0
        if args.rates == parser.get_default("rates"):
            args.rates = "1000"
        if args.scale is None:
            args.scale = False
        if args.streams == parser.get_default("streams"):
            args.streams = 200
        if args.targets == parser.get_default("targets"):
            args.targets = "direct,sluice,litellm,portkey"
    if args.scale is None:
        args.scale = True
    return args


def env_tool(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench: {name} is not set; run through scripts/bench.sh (it installs the tools)")
    return value


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def machine() -> dict:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "host": f"{os.cpu_count()} cores, {round(mem_kb / 1024 / 1024)} GB, {cpu_model}",
    }


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except OSError:
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def wait_quiet(limit: float) -> str | None:
    """Waits (bounded) for the load average to fall below QUIET_LOAD; says why not when it does not."""
    deadline = time.monotonic() + limit
    while load_average() > QUIET_LOAD and time.monotonic() < deadline:
        log(f"load average {load_average():.2f} > {QUIET_LOAD}; waiting for a quiet machine")
        time.sleep(min(30, max(deadline - time.monotonic(), 0)))
    load = load_average()
    return None if load <= QUIET_LOAD else f"load average was {load:.2f} at the start (other work on the machine)"


def build_targets(names: list[str], args: argparse.Namespace) -> list[Target]:
    made: list[Target] = []
    for name in names:
        if name == "direct":
            made.append(Direct(name="direct", label="direct to the mock"))
        elif name == "sluice":
            made.append(Sluice(name="sluice", label="Sluice", binary=args.gateway))
        elif name == "sluice-logs":
            made.append(Sluice(name="sluice-logs", label="Sluice (access log on)", binary=args.gateway, log_filter="info"))
        elif name in ("litellm", "litellm2"):
            workers = 2 if name == "litellm2" else 1
            made.append(
                LiteLLM(
                    name=name,
                    label=f"LiteLLM ({workers} worker{'s' if workers > 1 else ''})",
                    binary=env_tool("BENCH_LITELLM"),
                    workers=workers,
                )
            )
        elif name == "portkey":
            made.append(
                Portkey(
                    name="portkey",
                    label="Portkey",
                    start_script=env_tool("BENCH_PORTKEY"),
                    loopback_preload=str(REPO / "bench/peers/portkey/loopback.cjs"),
                )
            )
        else:
            sys.exit(f"bench: unknown target {name!r} (known: {ALL_TARGETS + ['sluice-logs']})")
    return made


def write_outputs(data: dict, out: Path, publish: bool) -> str:
    """results.md and overview.png in `out`; with `publish`, also docs/benchmarks.md and docs/benchmarks/."""
    block = report.markdown(data)
    (out / "results.md").write_text(block)
    chart_path = out / "overview.png"
    if data["records"]:
        report.chart(data, chart_path)
    log(f"wrote {out / 'results.json'}, {out / 'results.md'}" + (f", {chart_path}" if data["records"] else ""))
    if publish:
        docs = REPO / "docs"
        (docs / "benchmarks").mkdir(parents=True, exist_ok=True)
        # The committed copy leaves out the bulky parts (RSS series, full perf reports; they stay in `out`).
        slim = {k: v for k, v in data.items() if k not in ("soak", "profile")}
        if data.get("soak"):
            slim["soak"] = [{k: v for k, v in s.items() if k != "series"} for s in data["soak"]]
        if data.get("profile"):
            slim["profile"] = {
                kind: {
                    "by_component": reports.get("by_component", ""),
                    "self": "\n".join(reports.get("self", "").splitlines()[:40]),
                }
                for kind, reports in data["profile"].items()
            }
        (docs / "benchmarks" / "results.json").write_text(json.dumps(slim, indent=1, default=str))
        if data["records"]:
            (docs / "benchmarks" / "overview.png").write_bytes(chart_path.read_bytes())
        report.publish(docs / "benchmarks.md", block)
        log("published into docs/benchmarks.md and docs/benchmarks/")
    return block


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads((args.report_only / "results.json").read_text())
        print(write_outputs(data, args.report_only, args.publish))
        return 0
    # SIGTERM (e.g. from `timeout`) unwinds through the `finally` blocks that stop every started process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tools = Tools(wrk=env_tool("BENCH_WRK"), oha=env_tool("BENCH_OHA"), probe=env_tool("BENCH_PROBE"))
    nginx = env_tool("BENCH_NGINX")
    started = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or REPO / "target" / "bench" / started.strftime("%Y%m%d-%H%M%S")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if "direct" not in names:
        names.insert(0, "direct")
    settings = Settings(
        rounds=args.rounds,
        duration=args.duration,
        rates=[int(r) for r in args.rates.split(",") if r.strip()],
        pin=args.pin and (os.cpu_count() or 1) >= 2,
        wrk_threads=args.wrk_threads,
    )

    noisy = wait_quiet(args.wait_quiet) if args.wait_quiet else (
        None if load_average() <= QUIET_LOAD else f"load average was {load_average():.2f} at the start"
    )
    if noisy:
        log(f"warning: {noisy}; figures will be marked as taken under load")
    data: dict = {
        "meta": {
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if args.quick else "full",
            "command": "scripts/bench.sh " + " ".join(shlex.quote(a) for a in argv),
            "rounds": settings.rounds,
            "duration": settings.duration,
            "rates": settings.rates,
            "pinned": settings.pin,
            "load_start": load_average(),
            "noisy": noisy,
            **machine(),
        },
        "targets": [],
        "records": [],
    }
    meta = data["meta"]
    meta["versions"] = {
        "wrk": tool_version([tools.wrk, "--version"]).split(" [")[0].removeprefix("wrk "),
        "oha": tool_version([tools.oha, "--version"]),
        "nginx": tool_version([nginx, "-v"]).replace("nginx version: ", ""),
        "node": tool_version(["node", "--version"]),
        "python": platform.python_version(),
    }

    log(f"results in {out}")
    ups = upstreams.start(args.mock, nginx, work)
    targets: list[Target] = []
    try:
        if not (args.only_scale or args.only_propagation):
            targets = build_targets(names, args)
            for target in targets:
                log(f"starting {target.label}")
                target.start(ups, work)
                if target.version:
                    meta["versions"][target.label] = target.version
            data["targets"] = [{"name": t.name, "label": t.label} for t in targets]
            runner = Runner(tools, settings, ups, targets, log)
            log("warm-up")
            runner.warm_up(1.0 if args.quick else 3.0)
            data["idle_rss"] = runner.idle_rss()
            log("idle RSS: " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in data["idle_rss"].items()))
            data["records"] = runner.compare()
            skipped = [
                f"{t.label} skipped {rate} req/s" for t in targets for rate in settings.rates
                if not any(r.get("target") == t.name and r.get("rate") == rate for r in data["records"])
            ]
            if skipped:
                data["skipped_rates"] = (
                    "Fixed-rate runs are skipped where the rate exceeds 70 % of the target's measured c=64 throughput: "
                    + "; ".join(skipped) + "."
                )
            if not args.no_memory:
                log(f"memory with {args.streams} open streams")
                data["open_streams"] = runner.open_streams(args.streams, work)
            if args.soak and any(t.name == "sluice" for t in targets):
                # A fresh process, so the open-streams phase's high-water mark does not mask a drift.
                log(f"soak: {args.soak_requests:,} requests through a fresh Sluice process")
                soaked = Sluice(name="sluice", label="Sluice", binary=args.gateway)
                soaked.start(ups, work / "soak")
                try:
                    data["soak"] = [runner.soak(soaked, args.soak_requests, 10.0, args.soak_max_seconds)]
                finally:
                    soaked.stop()
        sluice_target = next((t for t in targets if t.name == "sluice"), None)
        if args.profile and sluice_target is not None:
            if profile.perf_available():
                data["profile"] = {}
                for kind in ("json", "stream"):
                    log(f"profiling Sluice under c=64 {kind} load")
                    data["profile"][kind] = profile.record(
                        sluice_target.accounted(kind).pid,
                        tools.wrk,
                        sluice_target.request(kind),
                        max(args.duration, 5.0),
                        out / f"profile-{kind}",
                    )["reports"]
            else:
                log("perf is not usable here; no profile")
        for target in targets:
            target.stop()
        if args.propagation or args.only_propagation:
            log("propagation")
            data["propagation"] = propagation.run(
                REPO, args.gateway, args.operator, ups, work, args.propagation_changes, log
            )
        if (args.scale and not args.only_propagation) or args.only_scale:
            log("scale")
            data["scale"] = [
                scale.run_step(args.gateway, tools.wrk, ups, work, keys, routes, min(args.duration, 5.0), log)
                for keys, routes in scale.STEPS
            ]
            data["compiler_bench"] = scale.compiler_bench(REPO, log)
            meta["versions"].setdefault("Sluice", tool_version([args.gateway, "--version"]))
    finally:
        for target in targets:
            target.stop()
        ups.stop()
    meta["load_end"] = load_average()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not data["targets"]:
        data["targets"] = [{"name": "sluice", "label": "Sluice"}]

    (out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    block = write_outputs(data, out, args.publish)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
