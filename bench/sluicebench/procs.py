"""Processes the suite starts (each in its own session, so it can be stopped with everything it forked)
and their own accounting from /proc: CPU time and resident memory, summed over the process tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; fields after it are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants that are alive now."""
    children = _children_map()
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes (all their threads, living and exited)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of stat(5) (utime, stime); index 11 and 12 after the command name.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def rss_kb(pids: list[int]) -> int:
    """Resident set size summed over the given processes (pages shared between forked workers count once
    per process, as `ps` and the issue's baseline count them)."""
    total = 0
    for pid in pids:
        try:
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total += int(statm[1]) * PAGE_KB
    return total


class RssSampler:
    """Samples the RSS of a process tree in the background; keeps the peak and the series."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        pids = process_tree(self.pid)
        refreshed = started
        while not self._stop.is_set():
            now = time.monotonic()
            if now - refreshed > 2.0:
                pids, refreshed = process_tree(self.pid), now
            self.samples.append((now - started, rss_kb(pids)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_kb(self) -> int:
        return max((kb for _, kb in self.samples), default=0)


@dataclass
class Proc:
    """A server process started by the suite."""

    name: str
    argv: list[str]
    log: Path
    cpu: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets a variable
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        argv = (["taskset", "-c", self.cpu] if self.cpu else []) + self.argv
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in {**os.environ, **self.env}.items() if v is not None},
            cwd=self.cwd,
            start_new_session=True,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> str:
        """Waits until the log contains `text`; returns the line that does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            for line in self.log.read_text(errors="replace").splitlines():
                if text in line:
                    return line
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not log {text!r} within {timeout}s:\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
        """Waits until `url` answers at all (any HTTP status counts: the server is up)."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                request = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(request, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError as error:
                last = str(error)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not answering at {url} after {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group the suite created for it, then SIGKILL after `grace` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        except ProcessLookupError:
            pass
        # Workers that outlived their parent are in the same group.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def load_average() -> float:
    return os.getloadavg()[0]
