"""The measured phases: the interleaved comparison rounds, memory with 1,000 open streams, the soak, and
the CPU pinning that each phase runs under."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import loadgen
from .procs import Proc, RssSampler, cpu_seconds, load_average, process_tree, rss_kb
from .targets import JSON, SLOW, STREAM, Direct, Target
from .upstreams import Upstreams

# Optional pinning for latency runs (--pin): the target alone on CPU 1; the load generator and the mock
# upstream on CPU 0 (at c=1 they run while the target waits, and the other way round). Off by default:
# measured here, pinning the target together with its upstream on one CPU added 40-70 µs to Sluice's
# c=1 latency through forced context switches, and this scheme did not reduce the spread enough to pay
# for itself on 2 cores. Throughput runs always use both CPUs for all.
LOADGEN_CPU, TARGET_CPU, ALL_CPUS = "0", "1", "0,1"
# Fixed-rate runs are skipped for a target whose measured maximum is below rate / this share.
RATE_HEADROOM = 0.7


@dataclass
class Tools:
    wrk: str
    oha: str
    probe: str


@dataclass
class Settings:
    rounds: int
    duration: float
    rates: list[int]
    pin: bool
    wrk_threads: int


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    connections: int
    tool: str  # "wrk", "probe" or "oha"
    rate: int | None = None
    latency_bound: bool = False  # pinned when pinning is on

    @property
    def label(self) -> str:
        if self.rate:
            return f"{self.kind} @ {self.rate} req/s"
        return f"{self.kind} c={self.connections}"


def scenarios(rates: list[int]) -> list[Scenario]:
    fixed = [
        Scenario("json-c1", JSON, 1, "wrk", latency_bound=True),
        Scenario("json-c64", JSON, 64, "wrk"),
        Scenario("stream-c1", STREAM, 1, "probe", latency_bound=True),
        Scenario("stream-c64", STREAM, 64, "wrk"),
    ]
    return fixed + [Scenario(f"json-rate-{rate}", JSON, 64, "oha", rate=rate, latency_bound=True) for rate in rates]


def set_affinity(procs: list[Proc], cpus: str) -> None:
    """Moves every thread of every process in each tree to `cpus` (taskset -a -p)."""
    for proc in procs:
        for pid in process_tree(proc.pid):
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


class Runner:
    def __init__(self, tools: Tools, settings: Settings, upstreams: Upstreams, targets: list[Target], log):
        self.tools, self.settings, self.upstreams, self.targets, self.log = tools, settings, upstreams, targets, log
        self.records: list[dict] = []
        self._pinned: tuple | None = None

    def _servers(self) -> list[Proc]:
        return self.upstreams.all() + [proc for target in self.targets for proc in target.procs]

    def _pin(self, latency_bound: bool, target: Target | None = None) -> str | None:
        """Applies the pinning for the next run; returns the load generator's CPU list."""
        pinned = self.settings.pin and latency_bound and target is not None
        state = (pinned, target.name if pinned and target else None)
        if state != self._pinned:
            set_affinity(self._servers(), ALL_CPUS)
            if pinned and target is not None:
                if isinstance(target, Direct):
                    set_affinity(self.upstreams.all(), TARGET_CPU)
                else:
                    set_affinity(target.procs, TARGET_CPU)
                    set_affinity(self.upstreams.all(), LOADGEN_CPU)
            self._pinned = state
        return LOADGEN_CPU if pinned else None

    def _load(self, scenario: Scenario, request: loadgen.Request, duration: float, cpu: str | None) -> dict:
        if scenario.tool == "wrk":
            return loadgen.wrk(
                self.tools.wrk, request, scenario.connections, duration, threads=self.settings.wrk_threads, cpu=cpu
            )
        if scenario.tool == "probe":
            return loadgen.probe(self.tools.probe, request, scenario.connections, duration, cpu=cpu)
        assert scenario.rate is not None
        return loadgen.oha(self.tools.oha, request, scenario.rate, duration, scenario.connections, cpu=cpu)

    def warm_up(self, seconds: float = 2.0) -> None:
        """Checks each target answers each kind of call correctly, then sends a few seconds of traffic of
        each kind through it before anything is measured (lazy initialisation, pools, JIT, imports)."""
        for target in self.targets:
            for kind in (JSON, STREAM):
                check_answer(target.request(kind), kind)
                result = loadgen.wrk(self.tools.wrk, target.request(kind), 4, seconds, threads=1)
                self.log(f"  warm-up {target.name} {kind}: {result['rps']:.0f} req/s, {result['failed']} failed")

    def measure(self, scenario: Scenario, target: Target, round_index: int) -> dict:
        cpu = self._pin(scenario.latency_bound, target)
        accounted = target.accounted(scenario.kind)
        request = target.request(scenario.kind)
        record = {
            "round": round_index,
            "scenario": scenario.name,
            "label": scenario.label,
            "target": target.name,
            "kind": scenario.kind,
            "connections": scenario.connections,
            "rate": scenario.rate,
            "tool": scenario.tool,
            "pinned": cpu is not None,
            "load_before": load_average(),
        }
        pids = process_tree(accounted.pid)
        cpu_before = cpu_seconds(pids)
        with RssSampler(accounted.pid) as sampler:
            result = self._load(scenario, request, self.settings.duration, cpu)
        cpu_used = cpu_seconds(process_tree(accounted.pid)) - cpu_before
        record.update(result)
        record["cpu_seconds"] = cpu_used
        record["cpu_us_per_request"] = cpu_used / result["ok"] * 1e6 if result["ok"] else None
        record["rss_peak_kb"] = sampler.peak_kb
        record["load_after"] = load_average()
        return record

    def compare(self) -> list[dict]:
        """Rounds of every scenario, each scenario run on every target back to back (target order rotates
        per round), so slow drifts of the machine hit every target alike."""
        all_scenarios = scenarios(self.settings.rates)
        for round_index in range(self.settings.rounds):
            order = self.targets[round_index % len(self.targets) :] + self.targets[: round_index % len(self.targets)]
            self.log(f"round {round_index + 1}/{self.settings.rounds} (load {load_average():.2f})")
            for scenario in all_scenarios:
                for target in order:
                    if scenario.rate and not self._rate_fits(target, scenario.rate):
                        continue
                    try:
                        record = self.measure(scenario, target, round_index)
                    except Exception as error:  # noqa: BLE001 - one failed run is reported, the suite goes on
                        record = {"round": round_index, "scenario": scenario.name, "target": target.name, "error": str(error)}
                    self.records.append(record)
                    self.log("  " + summary_line(record))
        self._pin(False)
        return self.records

    def _rate_fits(self, target: Target, rate: int) -> bool:
        measured = [
            r["rps"] for r in self.records if r["target"] == target.name and r["scenario"] == "json-c64" and "rps" in r
        ]
        return bool(measured) and max(measured) * RATE_HEADROOM >= rate

    def idle_rss(self) -> dict[str, int]:
        """RSS of each target's accounted process after warm-up with no traffic (2 s quiet first)."""
        time.sleep(2)
        return {target.name: rss_kb(process_tree(target.accounted(JSON).pid)) for target in self.targets}

    def open_streams(self, streams: int, workdir: Path, hold_seconds: float = 6.0) -> list[dict]:
        """RSS while `streams` streams are open at once through each target (the slow mock keeps each
        open ~10 s). Sampled while all are in flight; the probe then waits for every stream to end."""
        self._pin(False)
        results = []
        for target in self.targets:
            accounted = target.accounted(SLOW)
            before = rss_kb(process_tree(accounted.pid))
            request = target.request(SLOW)
            argv = [
                self.tools.probe,
                "--addr",
                f"{request.host}:{request.port}",
                "--path",
                request.path,
                "--connections",
                str(streams),
                "--requests",
                str(streams),
                "--duration",
                "60",
                "--warmup",
                "0",
                "--timeout",
                "60",
            ]
            body_file = workdir / f"slow-body-{target.name}.json"
            body_file.write_bytes(request.body)
            argv += ["--body-file", str(body_file)]
            for key, value in request.headers.items():
                argv += ["--header", f"{key}: {value}"]
            client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(2.0)  # connections opened and streams started
                with RssSampler(accounted.pid, interval=0.2) as sampler:
                    time.sleep(hold_seconds)
                out, err = client.communicate(timeout=120)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
                body_file.unlink(missing_ok=True)
            outcome = json.loads(out) if out.strip() else {"requests": 0, "errors": streams, "first_error": err[-300:]}
            record = {
                "target": target.name,
                "streams": streams,
                "rss_before_kb": before,
                "rss_peak_kb": sampler.peak_kb,
                "completed": outcome.get("requests", 0),
                "failed": outcome.get("errors", 0),
                "first_error": outcome.get("first_error"),
            }
            self.log(
                f"  {target.name}: {streams} open streams → RSS {record['rss_peak_kb'] / 1024:.1f} MB "
                f"(before {before / 1024:.1f} MB), {record['completed']} completed, {record['failed']} failed"
            )
            results.append(record)
        return results

    def soak(self, target: Target, total_requests: int, chunk_seconds: float, max_seconds: float) -> dict:
        """Non-streaming load at c=64 until `total_requests` succeeded (or `max_seconds` passed), RSS sampled
        every second throughout; drift compares the end with the level after the first chunk."""
        self._pin(False)
        accounted = target.accounted(JSON)
        request = target.request(JSON)
        started = time.monotonic()
        done = failed = 0
        chunks = []
        cpu_before = cpu_seconds(process_tree(accounted.pid))
        with RssSampler(accounted.pid, interval=1.0) as sampler:
            while done < total_requests and time.monotonic() - started < max_seconds:
                result = loadgen.wrk(self.tools.wrk, request, 64, chunk_seconds, threads=self.settings.wrk_threads)
                done += result["ok"]
                failed += result["failed"]
                chunks.append(
                    {
                        "t": time.monotonic() - started,
                        "done": done,
                        "rps": result["rps"],
                        "rss_kb": rss_kb(process_tree(accounted.pid)),
                    }
                )
                self.log(f"  soak {target.name}: {done:,} requests, {chunks[-1]['rss_kb'] / 1024:.1f} MB")
        cpu_used = cpu_seconds(process_tree(accounted.pid)) - cpu_before
        first, last = chunks[0]["rss_kb"], chunks[-1]["rss_kb"]
        return {
            "target": target.name,
            "requests": done,
            "failed": failed,
            "seconds": time.monotonic() - started,
            "rss_after_first_chunk_kb": first,
            "rss_end_kb": last,
            "rss_peak_kb": sampler.peak_kb,
            "drift_percent": (last - first) / first * 100 if first else None,
            "cpu_us_per_request": cpu_used / done * 1e6 if done else None,
            "chunks": chunks,
            "series": sampler.samples,
        }


def check_answer(request: loadgen.Request, kind: str, timeout: float = 120) -> None:
    """One request, answered 200 with an OpenAI-shaped body (a complete SSE stream for streams), or raise."""
    http_request = urllib.request.Request(
        request.url, data=request.body, headers={"Content-Type": "application/json", **request.headers}
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{request.url} answered {error.code}: {error.read()[:300]!r}") from None
    if kind == JSON:
        if json.loads(body).get("object") != "chat.completion":
            raise RuntimeError(f"{request.url}: not a chat completion: {body[:300]}")
    elif "data:" not in body or "[DONE]" not in body:
        raise RuntimeError(f"{request.url}: not a complete event stream: {body[:300]}")


def summary_line(record: dict) -> str:
    if "error" in record:
        return f"{record['scenario']:<16} {record['target']:<12} ERROR {record['error'][:200]}"
    lat = record.get("latency_us") or {}
    parts = [
        f"{record['scenario']:<16} {record['target']:<12}",
        f"{record['rps']:>9.0f} req/s",
        f"p50 {fmt_us(lat.get('p50'))} p99 {fmt_us(lat.get('p99'))}",
    ]
    if record.get("ttfb_us"):
        parts.append(f"ttfb p50 {fmt_us(record['ttfb_us']['p50'])}")
    cpu = record.get("cpu_us_per_request")
    parts.append(f"cpu {cpu:.1f} µs/req" if cpu is not None else "cpu -")
    parts.append(f"rss {record['rss_peak_kb'] / 1024:.1f} MB")
    if record.get("failed"):
        parts.append(f"FAILED {record['failed']}")
    return "  ".join(parts)


def fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} ms"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.0f} µs"
