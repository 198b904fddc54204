"""Turns the raw records into the figures of docs/benchmarks.md: spread across rounds (median, min–max),
latency added over the direct path in the same round, ratios against direct and against the peers, the
goals from the issue marked met or not, and the chart."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

DIRECT, SLUICE = "direct", "sluice"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def _ok(record: dict) -> bool:
    return "error" not in record


def values(records: list[dict], target: str, scenario: str, pick) -> list[float]:
    out = []
    for record in records:
        if record.get("target") == target and record.get("scenario") == scenario and _ok(record):
            value = pick(record)
            if value is not None:
                out.append(value)
    return out


def added(records: list[dict], target: str, scenario: str, pick) -> list[float]:
    """Per round: the target's figure minus the direct path's in the same round."""
    out = []
    rounds = {r["round"] for r in records if r.get("scenario") == scenario and _ok(r)}
    for round_index in sorted(rounds):
        mine = [pick(r) for r in records if r.get("target") == target and r.get("scenario") == scenario and r["round"] == round_index and _ok(r)]
        base = [pick(r) for r in records if r.get("target") == DIRECT and r.get("scenario") == scenario and r["round"] == round_index and _ok(r)]
        if mine and base and mine[0] is not None and base[0] is not None:
            out.append(mine[0] - base[0])
    return out


def spread(samples: list[float]) -> tuple[float, float, float] | None:
    if not samples:
        return None
    return min(samples), statistics.median(samples), max(samples)


def fmt_time(us: float | None) -> str:
    if us is None:
        return "–"
    sign = "+" if us > 0 else ("−" if us < 0 else "")
    magnitude = abs(us)
    if magnitude >= 1000:
        return f"{sign}{magnitude / 1000:.2f} ms" if magnitude < 100_000 else f"{sign}{magnitude / 1000:.0f} ms"
    return f"{sign}{magnitude:.0f} µs"


def fmt_abs_time(us: float | None) -> str:
    if us is None:
        return "–"
    if us >= 1000:
        return f"{us / 1000:.2f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"
    return f"{us:.0f} µs"


def fmt_spread(samples: list[float], fmt) -> str:
    s = spread(samples)
    if s is None:
        return "–"
    low, mid, high = s
    if len(samples) == 1:
        return fmt(mid)
    return f"{fmt(mid)} ({fmt(low)} … {fmt(high)})"


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_cpu(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs"


def fmt_mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def p(key: str, field: str = "latency_us"):
    return lambda r: (r.get(field) or {}).get(key)


def rps(r: dict) -> float:
    return r["rps"]


def cpu(r: dict) -> float | None:
    return r.get("cpu_us_per_request")


def rss_peak(r: dict) -> float:
    return r.get("rss_peak_kb", 0)


def median_of(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def summary(data: dict) -> dict:
    """The headline numbers per target (medians across rounds), used by the goals and the chart."""
    records = data["records"]
    out = {}
    for target in data["targets"]:
        name = target["name"]
        stream_open = next((s for s in data.get("open_streams", []) if s["target"] == name), None)
        out[name] = {
            "json_c1_added_p50": spread(added(records, name, "json-c1", p("p50"))),
            "json_c1_added_p99": spread(added(records, name, "json-c1", p("p99"))),
            "json_c64_rps": spread(values(records, name, "json-c64", rps)),
            "stream_c64_rps": spread(values(records, name, "stream-c64", rps)),
            "stream_c1_added_ttfb_p50": spread(added(records, name, "stream-c1", p("p50", "ttfb_us"))),
            "stream_c1_added_ttfb_p99": spread(added(records, name, "stream-c1", p("p99", "ttfb_us"))),
            "cpu_json": spread(values(records, name, "json-c64", cpu)),
            "cpu_stream": spread(values(records, name, "stream-c64", cpu)),
            "rss_idle_kb": data.get("idle_rss", {}).get(name),
            "rss_load_kb": max(
                values(records, name, "json-c64", rss_peak) + values(records, name, "stream-c64", rss_peak), default=None
            ),
            "rss_streams_kb": stream_open["rss_peak_kb"] if stream_open else None,
            "streams_completed": stream_open["completed"] if stream_open else None,
        }
    return out


def _second_half_drift(soak: dict) -> str:
    """RSS change from the chunk at half the requests to the end: separates warm-up growth from a leak."""
    chunks = soak.get("chunks") or []
    if len(chunks) < 4:
        return "–"
    half = next(c for c in chunks if c["done"] >= soak["requests"] / 2)
    return f"{(chunks[-1]['rss_kb'] - half['rss_kb']) / half['rss_kb'] * 100:+.1f} %"


def _streams(data: dict) -> int:
    return data["open_streams"][0]["streams"] if data.get("open_streams") else 0


def _mid(s) -> float | None:
    return None if s is None else s[1]


def goals(data: dict) -> list[tuple[str, str, str, str]]:
    """(goal, measured, verdict, note) rows for Sluice."""
    s = summary(data).get(SLUICE)
    if not s:
        return []
    rows = []

    def row(goal: str, value: float | None, limit: float, fmt, lower_is_better: bool = True, note: str = ""):
        if value is None:
            rows.append((goal, "not measured", "–", note))
            return
        met = value <= limit if lower_is_better else value >= limit
        rows.append((goal, fmt(value), "met" if met else "**not met**", note))

    row("CPU per request, non-streaming ≤ 50 µs", _mid(s["cpu_json"]), 50, fmt_cpu)
    row("CPU per request, streaming ≤ 100 µs", _mid(s["cpu_stream"]), 100, fmt_cpu)
    row("≥ 20,000 req/s at c=64, non-streaming", _mid(s["json_c64_rps"]), 20_000, fmt_rps, lower_is_better=False)
    row("added latency c=1 p50 ≤ 50 µs", _mid(s["json_c1_added_p50"]), 50, fmt_time)
    row("added latency c=1 p99 ≤ 200 µs", _mid(s["json_c1_added_p99"]), 200, fmt_time)
    row("added time to first byte ≤ 100 µs (p50)", _mid(s["stream_c1_added_ttfb_p50"]), 100, fmt_time)
    row("RSS idle ≤ 30 MB", s["rss_idle_kb"], 30 * 1024, fmt_mb)
    streams = _streams(data)
    row(
        "RSS with 1,000 open streams ≤ 64 MB",
        s["rss_streams_kb"],
        64 * 1024,
        fmt_mb,
        note=f"measured with only {streams} streams" if 0 < streams < 1000 else "",
    )
    soak = next((x for x in data.get("soak", []) if x["target"] == SLUICE), None)
    row(
        "RSS drift ≤ 5 % over a soak of ≥ 1M requests",
        soak["drift_percent"] if soak else None,
        5,
        lambda v: f"{v:+.1f} % over {soak['requests']:,} requests" if soak else "",
    )
    prop = data.get("propagation")
    rows.append(
        (
            "revocation reaches every gateway ≤ 2 s p99 (API watch)",
            prop["summary"] if prop else "not measured",
            prop["verdict"] if prop else "–",
            "" if prop else "needs the operator and the apiserver harness; see Propagation below",
        )
    )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2f}×"


def _extra_sections(data: dict) -> list[str]:
    """Soak, scale, compiler, propagation, profile and goals: the parts that do not need the rounds."""
    lines: list[str] = []
    labels = {t["name"]: t["label"] for t in data["targets"]}
    if data.get("soak"):
        lines += ["", "#### Soak", ""]
        rows = []
        for soak in data["soak"]:
            rows.append(
                [
                    labels.get(soak["target"], soak["target"]),
                    f"{soak['requests']:,}",
                    str(soak["failed"]),
                    f"{soak['seconds']:.0f} s",
                    fmt_mb(soak["rss_after_first_chunk_kb"]),
                    fmt_mb(soak["rss_end_kb"]),
                    fmt_mb(soak["rss_peak_kb"]),
                    f"{soak['drift_percent']:+.1f} %",
                    _second_half_drift(soak),
                    fmt_cpu(soak["cpu_us_per_request"]) if soak["cpu_us_per_request"] else "–",
                ]
            )
        lines += _table(
            [
                "path",
                "requests",
                "failed",
                "time",
                "RSS after first 10 s",
                "RSS at end",
                "peak",
                "drift",
                "drift over the second half",
                "CPU/request",
            ],
            rows,
        )

    if data.get("scale"):
        lines += ["", "#### Scale (Sluice, local mode)", ""]
        rows = []
        for step in data["scale"]:
            rows.append(
                [
                    f"{step['keys']:,}",
                    f"{step['routes']:,}",
                    f"{step['manifest_bytes'] / 1e6:.1f} MB",
                    f"{step['ready_seconds']:.2f} s",
                    f"{step['reload_seconds']:.2f} s",
                    fmt_mb(step["rss_idle_kb"]),
                    f"{fmt_abs_time(step['c1_p50_us'])} / {fmt_abs_time(step['c1_p99_us'])}",
                    fmt_rps(step["c64_rps"]),
                    fmt_cpu(step["cpu_us_per_request"]) if step["cpu_us_per_request"] else "–",
                ]
            )
        lines += _table(
            [
                "keys",
                "routes",
                "manifests",
                "start → ready",
                "reload (write → served)",
                "idle RSS",
                "c=1 p50 / p99",
                "c=64 req/s",
                "CPU/request",
            ],
            rows,
        )
    if data.get("compiler_bench"):
        lines += ["", "Compiler (`cargo bench -p sluice-crds --bench compile`, same machine, same run):", ""]
        lines += [line for line in data["compiler_bench"].splitlines() if line.startswith("|")]

    if data.get("propagation"):
        prop = data["propagation"]
        lines += ["", "#### Propagation: VirtualKey disabled → rejected (real apiserver + operator + 3 gateways)", ""]
        rows = []
        for label, key in (
            ("disable → every API-watch gateway answers 401", "disable_api_every_gateway"),
            ("disable → mounted-file gateway answers 401", "disable_files"),
            ("disable → every API-watch gateway, counted from before `kubectl patch` started", "disable_api_every_gateway_from_sent"),
            ("re-enable → every API-watch gateway answers 200", "enable_api_every_gateway"),
            ("re-enable → mounted-file gateway answers 200", "enable_files"),
        ):
            st = prop[key]
            rows.append(
                [label, str(st["n"])]
                + [f"{st[k]:.0f} ms" if st[k] is not None else "–" for k in ("p50_ms", "p99_ms", "max_ms")]
            )
        lines += _table(["change", "samples", "p50", "p99", "max"], rows)
        lines += ["", f"{prop['changes']} changes, {prop['timeouts']} timeouts. Includes: {prop['includes']}."]

    if data.get("profile"):
        lines += ["", "#### Where Sluice's CPU time goes (perf, cpu-clock, c=64)", ""]
        for kind, reports in data["profile"].items():
            components = reports.get("by_component", "").splitlines()[:12]
            lines += [f"{kind} — self time by component:", "", "```"] + components + ["```", ""]
            top = [
                re.sub(r"\s+-\s+-\s*$", "", line).strip()[:150]
                for line in reports.get("self", "").splitlines()
                if "%" in line
            ][:25]
            lines += [f"<details><summary>{kind}: self time by function (top 25)</summary>", "", "```"]
            lines += top + ["```", "", "</details>", ""]

    lines += ["", "#### Goals (Sluice)", ""]
    lines += _table(["goal", "measured (median)", "verdict", "note"], [list(r) for r in goals(data)])
    return lines


def markdown(data: dict) -> str:
    records, targets = data["records"], data["targets"]
    labels = {t["name"]: t["label"] for t in targets}
    names = [t["name"] for t in targets]
    s = summary(data)
    meta = data["meta"]
    lines = [BEGIN, "", f"### Results of {meta['started']} ({meta['mode']})", ""]
    lines += [
        f"Command: `{meta['command']}` — {meta['rounds']} interleaved round(s) of {meta['duration']:g} s per figure; "
        f"cells show the median across rounds and, in parentheses, the min … max. Load average at start "
        f"{meta['load_start']:.2f}, at end {meta.get('load_end', 0):.2f}."
    ]
    loads = [r["load_before"] for r in records if "load_before" in r]
    if loads:
        busy = sorted({r["round"] + 1 for r in records if r.get("load_before", 0) > 1.0})
        lines += [
            "",
            f"1-minute load average before each measured run: {min(loads):.2f} … {max(loads):.2f}"
            + (f" (above 1.0 in round(s) {', '.join(map(str, busy))}: other work on the machine)." if busy else "."),
        ]
    if meta.get("noisy"):
        lines += ["", f"**Taken under load**: {meta['noisy']}"]
    lines += ["", "Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "."]

    if not records:
        lines += _extra_sections(data)
        lines += ["", END]
        return "\n".join(lines) + "\n"
    lines += ["", "#### Headline (same machine, same run)", ""]
    rows = []
    for name in names:
        t = s[name]
        direct = name == DIRECT
        rows.append(
            [
                labels[name],
                "—" if direct else f"{fmt_time(_mid(t['json_c1_added_p50']))} / {fmt_time(_mid(t['json_c1_added_p99']))}",
                fmt_rps(_mid(t["json_c64_rps"])) if t["json_c64_rps"] else "–",
                "—" if direct else fmt_time(_mid(t["stream_c1_added_ttfb_p50"])),
                (fmt_cpu(_mid(t["cpu_json"])) if t["cpu_json"] else "–")
                + " / "
                + (fmt_cpu(_mid(t["cpu_stream"])) if t["cpu_stream"] else "–"),
                " / ".join(fmt_mb(v) if v else "–" for v in (t["rss_idle_kb"], t["rss_load_kb"], t["rss_streams_kb"])),
            ]
        )
    lines += _table(
        [
            "path",
            "non-stream c=1: added p50 / p99",
            "non-stream c=64: req/s",
            "stream c=1: added time to first event (p50)",
            "CPU per request: non-stream / stream",
            f"RSS: idle / under load / {_streams(data):,} open streams",
        ],
        rows,
    )

    if SLUICE in s:
        lines += ["", "#### Sluice against the others (ratio of the medians)", ""]
        rows = []
        sl = s[SLUICE]
        for name in names:
            if name == SLUICE:
                continue
            t = s[name]
            rows.append(
                [
                    labels[name],
                    ratio(_mid(t["cpu_json"]), _mid(sl["cpu_json"])),
                    ratio(_mid(t["cpu_stream"]), _mid(sl["cpu_stream"])),
                    ratio(_mid(sl["json_c64_rps"]), _mid(t["json_c64_rps"])),
                    ratio(_mid(t["json_c1_added_p50"]), _mid(sl["json_c1_added_p50"])) if name != DIRECT else "–",
                    ratio(t["rss_idle_kb"], sl["rss_idle_kb"]),
                ]
            )
        lines += _table(
            [
                "compared with",
                "its CPU/request ÷ Sluice's (non-stream)",
                "(stream)",
                "Sluice's c=64 req/s ÷ its",
                "its added c=1 p50 ÷ Sluice's",
                "its idle RSS ÷ Sluice's",
            ],
            rows,
        )

    lines += ["", "#### Latency by scenario (absolute; added over direct in the same round below it)", ""]
    scenario_names = []
    for r in records:
        if r.get("scenario") not in scenario_names and _ok(r):
            scenario_names.append(r["scenario"])
    rows = []
    for scenario in scenario_names:
        label = next(r["label"] for r in records if r.get("scenario") == scenario and _ok(r))
        for name in names:
            got = values(records, name, scenario, rps)
            if not got:
                continue
            failed = sum(values(records, name, scenario, lambda r: r.get("failed", 0)))
            row = [
                label,
                labels[name],
                fmt_spread(got, fmt_rps),
                fmt_spread(values(records, name, scenario, p("p50")), fmt_abs_time),
                fmt_spread(values(records, name, scenario, p("p99")), fmt_abs_time),
                "–" if name == DIRECT else fmt_spread(added(records, name, scenario, p("p50")), fmt_time),
                "–" if name == DIRECT else fmt_spread(added(records, name, scenario, p("p99")), fmt_time),
            ]
            ttfb = values(records, name, scenario, p("p50", "ttfb_us"))
            row.append(fmt_spread(ttfb, fmt_abs_time) if ttfb else "")
            cpu_values = values(records, name, scenario, cpu)
            row.append(fmt_spread(cpu_values, fmt_cpu) if cpu_values else "–")
            row.append(str(int(failed)) if failed else "0")
            rows.append(row)
    lines += _table(
        ["scenario", "path", "req/s", "p50", "p99", "added p50", "added p99", "first event p50", "CPU/request", "failed"],
        rows,
    )
    skipped = data.get("skipped_rates")
    if skipped:
        lines += ["", skipped]

    if data.get("open_streams"):
        lines += ["", "#### Memory", ""]
        rows = []
        for name in names:
            t = s[name]
            stream = next((x for x in data["open_streams"] if x["target"] == name), None)
            rows.append(
                [
                    labels[name],
                    fmt_mb(t["rss_idle_kb"]) if t["rss_idle_kb"] else "–",
                    fmt_mb(t["rss_load_kb"]) if t["rss_load_kb"] else "–",
                    fmt_mb(stream["rss_peak_kb"]) if stream else "–",
                    f"{stream['completed']:,} / {stream['streams']:,}" if stream else "–",
                ]
            )
        lines += _table(
            ["path", "idle", "peak under c=64 load", f"{_streams(data):,} open streams", "streams completed"], rows
        )

    lines += _extra_sections(data)
    lines += ["", "![overview](benchmarks/overview.png)", "", END]
    return "\n".join(lines) + "\n"


def publish(doc: Path, block: str) -> None:
    """Replaces the generated block in docs/benchmarks.md (or appends it)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.write_text(text)


def chart(data: dict, out: Path) -> None:
    """Four panels on log scales: CPU per request, added latency at c=1, max throughput, memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(data)
    targets = [t for t in data["targets"]]
    names = [t["name"] for t in targets]
    labels = [t["label"].replace(" (", "\n(") for t in targets]
    colors = {"direct": "#9e9e9e", "sluice": "#1f77b4"}
    palette = ["#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    color = [colors.get(n) or palette[i % len(palette)] for i, n in enumerate(names)]

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    fig.suptitle(f"Sluice vs direct vs peers — {data['meta']['started']}, {data['meta']['host']}", fontsize=12)

    hatches = ["", "///", "..."]

    def bars(ax, series: list[tuple[str, list]], title: str, ylabel: str):
        from matplotlib.patches import Patch

        width = 0.8 / len(series)
        for j, (_, triples) in enumerate(series):
            xs, mids, lows, highs, cs = [], [], [], [], []
            for i, triple in enumerate(triples):
                if triple is None or triple[1] is None or triple[1] <= 0:
                    continue
                xs.append(i + (j - (len(series) - 1) / 2) * width)
                mids.append(triple[1])
                lows.append(max(triple[1] - triple[0], 0))
                highs.append(max(triple[2] - triple[1], 0))
                cs.append(color[i])
            ax.bar(
                xs, mids, width * 0.95, yerr=[lows, highs], color=cs, hatch=hatches[j], edgecolor="white", capsize=3
            )
            for x, m in zip(xs, mids):
                ax.annotate(_short(m, ylabel), (x, m), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel + " (log scale)")
        if len(series) > 1:
            handles = [
                Patch(facecolor="#bbbbbb", hatch=hatches[j], edgecolor="white", label=name)
                for j, (name, _) in enumerate(series)
            ]
            ax.legend(handles=handles, fontsize=8)

    bars(
        axes[0][0],
        [("non-stream", [s[n]["cpu_json"] for n in names]), ("stream", [s[n]["cpu_stream"] for n in names])],
        "CPU time per request (target process, c=64)",
        "µs",
    )
    bars(
        axes[0][1],
        [
            ("p50", [None if n == DIRECT else s[n]["json_c1_added_p50"] for n in names]),
            ("p99", [None if n == DIRECT else s[n]["json_c1_added_p99"] for n in names]),
            ("first event p50", [None if n == DIRECT else s[n]["stream_c1_added_ttfb_p50"] for n in names]),
        ],
        "Latency added over direct, c=1",
        "µs",
    )
    bars(
        axes[1][0],
        [("non-stream", [s[n]["json_c64_rps"] for n in names]), ("stream", [s[n]["stream_c64_rps"] for n in names])],
        "Throughput at c=64 (2 shared cores)",
        "req/s",
    )

    def point(kb):
        return None if not kb else (kb / 1024, kb / 1024, kb / 1024)

    bars(
        axes[1][1],
        [
            ("idle", [point(s[n]["rss_idle_kb"]) for n in names]),
            ("under load", [point(s[n]["rss_load_kb"]) for n in names]),
            (f"{_streams(data):,} open streams", [point(s[n]["rss_streams_kb"]) for n in names]),
        ],
        "Resident memory",
        "MB",
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _short(value: float, unit: str) -> str:
    if unit == "req/s":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    if unit.startswith("µs") and value >= 1000:
        return f"{value / 1000:.1f}ms"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
