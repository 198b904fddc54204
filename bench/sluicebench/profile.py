"""Where Sluice's time goes: a sampling CPU profile (`perf record -e cpu-clock`, DWARF call graphs) of the
gateway process under c=64 load, reported as self time by function and inclusive time by function.
cpu-clock is a software event, so this works where hardware counters are not available."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

from . import loadgen

# Sampling frequency (per CPU) and the user stack copied per sample for DWARF unwinding.
FREQUENCY = 499
STACK_BYTES = 16384


def perf_available() -> bool:
    if not shutil.which("perf"):
        return False
    done = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"], capture_output=True)
    return done.returncode == 0


def record(pid: int, wrk_binary: str, request: loadgen.Request, seconds: float, out: Path, connections: int = 64) -> dict:
    """Profiles `pid` while wrk drives `connections` connections for `seconds`; returns the reports."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "perf.data"
    recorder = subprocess.Popen(
        [
            "perf",
            "record",
            "-e",
            "cpu-clock",
            "-F",
            str(FREQUENCY),
            "--call-graph",
            f"dwarf,{STACK_BYTES}",
            "-p",
            str(pid),
            "-o",
            str(data),
            "--",
            "sleep",
            str(seconds + 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    result: dict = {}

    def drive() -> None:
        result["load"] = loadgen.wrk(wrk_binary, request, connections, seconds)

    driver = threading.Thread(target=drive)
    driver.start()
    driver.join(timeout=seconds + loadgen.RUN_SLACK_SECONDS)
    try:
        recorder.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait()
    reports = {}
    for name, extra in {
        "self": ["--no-children", "-g", "none"],
        "inclusive": ["--children", "-g", "none"],
    }.items():
        done = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--sort", "symbol", "--percent-limit", "0.05", *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
        text = "\n".join(line for line in done.stdout.splitlines() if line.strip() and not line.startswith("#"))
        (out / f"profile-{name}.txt").write_text(text + "\n")
        reports[name] = text
    data.unlink(missing_ok=True)
    reports["by_component"] = "\n".join(f"{share:6.2f}%  {name}" for name, share in by_component(reports["self"]))
    (out / "profile-by-component.txt").write_text(reports["by_component"] + "\n")
    return {"load": result.get("load"), "reports": reports}


ALLOCATOR = re.compile(r"^(_int_malloc|_int_free|_int_realloc|malloc|cfree|free|realloc|calloc|malloc_consolidate|unlink_chunk|tcache_|__libc_malloc|__libc_free|__rust_alloc|__rust_dealloc|__rust_realloc)")
LIBC_MEMORY = re.compile(r"^__(memmove|memcpy|memset|memcmp|memchr|strlen)")
CRATE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")


def by_component(self_report: str) -> list[tuple[str, float]]:
    """Self time summed by component: the kernel, the allocator, libc's memory routines, and each Rust
    crate (the first path segment of the symbol, looking through `<T as Trait>` wrappers)."""
    shares: dict[str, float] = defaultdict(float)
    for line in self_report.splitlines():
        match = re.match(r"\s*([0-9.]+)%\s+\[(.)\]\s+(.*?)\s*(?:-\s+-\s*)?$", line)
        if not match:
            continue
        share, space, symbol = float(match.group(1)), match.group(2), match.group(3).strip()
        if space == "k":
            name = "kernel (TCP loopback, scheduler, syscalls)"
        elif ALLOCATOR.match(symbol):
            name = "allocator (glibc malloc/free)"
        elif LIBC_MEMORY.match(symbol):
            name = "libc memmove/memcpy/…"
        else:
            crate = CRATE.search(symbol.lstrip("<&*"))
            name = crate.group(1) if crate else "other"
        shares[name] += share
    return sorted(shares.items(), key=lambda item: -item[1])
