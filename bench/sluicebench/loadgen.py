"""The load generators, each run as a subprocess with results parsed into one shape (latencies in µs):
wrk for closed-loop load at a fixed concurrency (and so the maximum throughput), oha for open-loop load
at a fixed rate with latency measured from each request's scheduled start (no coordinated omission),
and the suite's probe for the time to the first streamed event."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Hard cap on any one load-generator run beyond its own duration, so a hung peer cannot stall the suite.
RUN_SLACK_SECONDS = 60


@dataclass
class Request:
    """One HTTP request shape: where to send it and what."""

    host: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


def _taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu else []


def _lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def wrk(
    binary: str,
    request: Request,
    connections: int,
    duration: float,
    threads: int = 1,
    cpu: str | None = None,
    timeout_s: int = 30,
) -> dict:
    """Closed loop: `connections` keep-alive connections each sending the next request when the last
    answer is complete. Returns requests, rps, errors and latency percentiles in µs."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(request.body.decode())}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    for key, value in request.headers.items():
        lines.append(f"wrk.headers[ {_lua_string(key)} ] = {_lua_string(value)}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n" + WRK_DONE)
    try:
        argv = _taskset(cpu) + [
            binary,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={timeout_s}s",
            "-s",
            script.name,
            request.url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + RUN_SLACK_SECONDS)
    finally:
        os.unlink(script.name)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON ") :])
            seconds = result["duration_us"] / 1e6
            errors = result["errors"]
            result["failed"] = sum(errors.values())
            result["ok"] = max(result["requests"] - errors["status"], 0)
            result["rps"] = result["ok"] / seconds if seconds else 0.0
            result["seconds"] = seconds
            return result
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr[-500:]} {done.stdout[-500:]}")


def oha(
    binary: str,
    request: Request,
    rate: float,
    duration: float,
    connections: int,
    cpu: str | None = None,
) -> dict:
    """Open loop at `rate` requests/s: oha schedules each request and, with --latency-correction,
    measures it from its scheduled start, so a stalled target cannot hide its queueing delay."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as body:
        body.write(request.body)
    try:
        argv = _taskset(cpu) + [
            binary,
            "--no-tui",
            "--output-format",
            "json",
            "-z",
            f"{duration}s",
            "-c",
            str(connections),
            "-q",
            str(rate),
            "--latency-correction",
            "--disable-compression",
            "-t",
            "30s",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            body.name,
        ]
        for key, value in request.headers.items():
            argv += ["-H", f"{key}: {value}"]
        argv.append(request.url)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + RUN_SLACK_SECONDS)
    finally:
        os.unlink(body.name)
    if done.returncode != 0:
        raise RuntimeError(f"oha failed (exit {done.returncode}): {done.stderr[-800:]}")
    data = json.loads(done.stdout)
    summary, percentiles = data["summary"], data["latencyPercentiles"]
    statuses = {int(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    ok = statuses.get(200, 0)
    # Requests still in flight when the duration ends are cut off by oha itself, not failed by the target.
    error_kinds = dict(data.get("errorDistribution", {}))
    aborted = sum(v for k, v in error_kinds.items() if "deadline" in k.lower())
    errors = sum(error_kinds.values()) - aborted
    seconds = summary.get("total") or duration

    def micros(value: float | None) -> float | None:
        return None if value is None else value * 1e6

    return {
        "requests": sum(statuses.values()) + errors,
        "ok": ok,
        "failed": errors + sum(v for k, v in statuses.items() if k != 200),
        "rps": ok / seconds if seconds else 0.0,
        "seconds": seconds,
        "rate": rate,
        "errors_by_kind": error_kinds,
        "aborted_at_end": aborted,
        "latency_us": {
            "p50": micros(percentiles.get("p50")),
            "p90": micros(percentiles.get("p90")),
            "p99": micros(percentiles.get("p99")),
            "p999": micros(percentiles.get("p99.9")),
            "max": micros(summary.get("slowest")),
            "mean": micros(summary.get("average")),
        },
    }


def probe(
    binary: str,
    request: Request,
    connections: int,
    duration: float,
    cpu: str | None = None,
    requests: int | None = None,
    warmup: int = 20,
) -> dict:
    """Time to the first streamed event (`data:`) and to the end of the stream, closed loop."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as body:
        body.write(request.body)
    try:
        argv = _taskset(cpu) + [
            binary,
            "--addr",
            f"{request.host}:{request.port}",
            "--path",
            request.path,
            "--body-file",
            body.name,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
        ]
        if requests is not None:
            argv += ["--requests", str(requests)]
        for key, value in request.headers.items():
            argv += ["--header", f"{key}: {value}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + RUN_SLACK_SECONDS + 60)
    finally:
        os.unlink(body.name)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed (exit {done.returncode}): {done.stderr[-800:]}")
    data = json.loads(done.stdout)

    def micros(block: dict | None) -> dict | None:
        return None if block is None else {k: v / 1000 for k, v in block.items()}

    return {
        "requests": data["requests"] + data["errors"],
        "ok": data["requests"],
        "failed": data["errors"],
        "first_error": data["first_error"],
        "statuses": data["statuses"],
        "rps": data["requests"] / data["elapsed_s"] if data["elapsed_s"] else 0.0,
        "seconds": data["elapsed_s"],
        "ttfb_us": micros(data["first_event_ns"]),
        "latency_us": micros(data["total_ns"]),
    }


def write_body(path: Path, payload: dict) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    path.write_bytes(data)
    return data
