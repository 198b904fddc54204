"""Tests of the benchmark suite's own logic: the report's arithmetic (added latency per round, spread,
goal verdicts, the docs block replacement), the wrk script quoting, and the probe's timing of the first
streamed event against a local server that holds that event back.

Run: python3 -m unittest discover -s bench/tests   (the probe test builds bench/probe/probe.rs with rustc)
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluicebench import loadgen, report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def record(target: str, scenario: str, round_index: int, p50: float, p99: float, rps: float = 1000, cpu=10.0):
    return {
        "target": target,
        "scenario": scenario,
        "round": round_index,
        "label": scenario,
        "rps": rps,
        "failed": 0,
        "latency_us": {"p50": p50, "p99": p99},
        "cpu_us_per_request": cpu,
        "rss_peak_kb": 20_000,
    }


class ReportArithmetic(unittest.TestCase):
    def test_added_latency_subtracts_the_direct_path_of_the_same_round(self):
        records = [
            record("direct", "json-c1", 0, 50, 100),
            record("sluice", "json-c1", 0, 90, 300),
            record("direct", "json-c1", 1, 70, 120),
            record("sluice", "json-c1", 1, 100, 250),
        ]
        self.assertEqual(report.added(records, "sluice", "json-c1", report.p("p50")), [40, 30])
        self.assertEqual(report.added(records, "sluice", "json-c1", report.p("p99")), [200, 130])

    def test_failed_runs_are_left_out_of_every_figure(self):
        records = [
            record("direct", "json-c1", 0, 50, 100),
            {"target": "sluice", "scenario": "json-c1", "round": 0, "error": "wrk gave no result"},
        ]
        self.assertEqual(report.added(records, "sluice", "json-c1", report.p("p50")), [])
        self.assertEqual(report.values(records, "sluice", "json-c1", report.rps), [])

    def test_spread_is_min_median_max(self):
        self.assertEqual(report.spread([3.0, 1.0, 2.0]), (1.0, 2.0, 3.0))
        self.assertIsNone(report.spread([]))

    def test_goals_mark_met_and_missed(self):
        records = []
        for r in range(3):
            records += [
                record("direct", "json-c1", r, 50, 100),
                record("sluice", "json-c1", r, 80, 400),  # +30 µs p50 (met), +300 µs p99 (missed)
                record("direct", "json-c64", r, 900, 2000, rps=100_000, cpu=5),
                record("sluice", "json-c64", r, 3000, 9000, rps=25_000, cpu=40),
            ]
        data = {
            "records": records,
            "targets": [{"name": "direct", "label": "direct"}, {"name": "sluice", "label": "Sluice"}],
            "idle_rss": {"direct": 10_000, "sluice": 40 * 1024},
        }
        verdicts = {goal: verdict for goal, _, verdict, _ in report.goals(data)}
        self.assertEqual(verdicts["added latency c=1 p50 ≤ 50 µs"], "met")
        self.assertEqual(verdicts["added latency c=1 p99 ≤ 200 µs"], "**not met**")
        self.assertEqual(verdicts["CPU per request, non-streaming ≤ 50 µs"], "met")
        self.assertEqual(verdicts["≥ 20,000 req/s at c=64, non-streaming"], "met")
        self.assertEqual(verdicts["RSS idle ≤ 30 MB"], "**not met**")
        self.assertEqual(verdicts["CPU per request, streaming ≤ 100 µs"], "–")

    def test_publish_replaces_only_the_generated_block(self):
        with tempfile.TemporaryDirectory() as tmp:
            doc = Path(tmp) / "benchmarks.md"
            doc.write_text(f"# B\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\n## After\nkept\n")
            report.publish(doc, f"{report.BEGIN}\nnew\n{report.END}\n")
            text = doc.read_text()
            self.assertIn("intro", text)
            self.assertIn("## After\nkept", text)
            self.assertIn("new", text)
            self.assertNotIn("old", text)


class WrkScript(unittest.TestCase):
    def test_lua_long_strings_keep_quotes_and_brackets(self):
        text = 'say "hi" [x] ]] \\n'
        self.assertEqual(loadgen._lua_string(text), "[====[" + text + "]====]")


class SlowFirstEvent(http.server.BaseHTTPRequestHandler):
    """Sends the response head at once, then the first SSE event only after HOLD seconds."""

    HOLD = 0.05
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        time.sleep(self.HOLD)
        for event in (b"data: {\"n\":1}\n\n", b"data: [DONE]\n\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, *_args):
        pass


@unittest.skipUnless(shutil.which("rustc"), "rustc is needed to build the probe")
class Probe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.binary = str(Path(cls.tmp.name) / "probe")
        subprocess.run(
            ["rustc", "--edition", "2021", "-O", "-o", cls.binary, str(REPO / "bench/probe/probe.rs")],
            check=True,
            capture_output=True,
        )

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_first_event_is_timed_at_the_event_not_at_the_head(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFirstEvent)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            request = loadgen.Request("127.0.0.1", server.server_address[1], "/v1/chat/completions", {}, b"{}")
            result = loadgen.probe(self.binary, request, connections=1, duration=5, requests=5, warmup=1)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(result["ok"], 5)
        self.assertEqual(result["failed"], 0)
        hold_us = SlowFirstEvent.HOLD * 1e6
        self.assertGreaterEqual(result["ttfb_us"]["min"], hold_us)
        self.assertGreaterEqual(result["latency_us"]["min"], result["ttfb_us"]["min"])


if __name__ == "__main__":
    unittest.main()
