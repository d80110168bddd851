"""The self-contained HTML report: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import TYPE_CHECKING

from aftershock.report.model import Findings, fault_attribution
from aftershock.report.svg import Line, cascade_graph, fault_colour, line_chart

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aftershock.report.compare import Comparison
    from aftershock.report.model import RunData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;
margin:0;background:#f5f6f8}
main{max-width:1000px;margin:0 auto;padding:18px 20px 40px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce2;
padding-bottom:4px}
.meta{color:#5b6673;font-size:13px}
.verdict{border-radius:8px;padding:12px 16px;margin:14px 0;color:#fff}
.verdict.pass{background:#2e8b57}.verdict.fail{background:#c0392b}.verdict.unknown{background:#7f8c8d}
.verdict h2{border:0;color:#fff;margin:0 0 4px;font-size:20px}
.verdict ul{margin:4px 0 0 18px;padding:0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #dde1e6;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecea}tr.passed td.status{color:#2e8b57}tr.failed td.status{color:#c0392b}
td.worse{color:#c0392b;font-weight:600}td.better{color:#2e8b57}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.chart,.cascade{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:6px 0;
max-width:100%;height:auto}
.chart-title{font-size:13px;font-weight:600;fill:#1d2733}
.tick,.legend{font-size:11px;fill:#5b6673}.window-label{font-size:10px;fill:#333}
.grid{stroke:#eceff2}.axis{stroke:#9aa4ae}
.node rect{stroke:#555;stroke-width:1}.node.origin rect{fill:#fde2c8}.node.failed rect{fill:#f8d0cc}
.node-name{font-size:12px;font-weight:600}.node-sub{font-size:10px;fill:#444}
.cascade-fault{font-size:11px;font-weight:600;fill:#1d2733}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.empty{color:#5b6673;font-style:italic}
"""


def _num(v: float | int | None, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v:,.{digits}f}{unit}"


def _when(ns: int | None) -> str:
    if ns is None:
        return "–"
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _table(
    head: Sequence[str], rows: Iterable[Sequence[str]], *, cls: Sequence[str] | None = None
) -> str:
    body = []
    for i, row in enumerate(rows):
        klass = f' class="{cls[i]}"' if cls and cls[i] else ""
        body.append(f"<tr{klass}>" + "".join(row) + "</tr>")
    if not body:
        return '<p class="empty">None.</p>'
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


def _td(text: object, *, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _verdict(f: Findings, data: RunData) -> str:
    v = f.verdict
    if v is None:
        state, title = "unknown", "NO VERDICT"
        reasons = ["the analyzers produced no run verdict (no client events were analysed)"]
    else:
        state = "pass" if v.passed else "fail"
        title = "PASS" if v.passed else "FAIL"
        reasons = list(v.reasons)
    if data.meta.status != "completed" or data.meta.note:
        note = f": {data.meta.note}" if data.meta.note else ""
        reasons.append(f"run {data.meta.status}{note}")
    items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    checks = ""
    if v is not None:
        checks = _table(
            ["SLO check", "status", "observed", "threshold", "reason"],
            (
                [
                    _td(c.name),
                    _td("pass" if c.passed else "FAIL", cls="status"),
                    _td(_num(c.observed, 3), num=True),
                    _td(_num(c.threshold, 3), num=True),
                    _td(c.reason),
                ]
                for c in v.checks
            ),
            cls=["passed" if c.passed else "failed" for c in v.checks],
        )
    return (
        f'<section class="verdict {state}" id="verdict"><h2>Verdict: {title}</h2>'
        + (f"<ul>{items}</ul>" if items else "")
        + "</section>"
        + checks
    )


def _charts(data: RunData) -> str:
    s = data.series
    per_s = 1.0 / s.bucket_s
    mid = [(b.start_s + s.bucket_s / 2, b) for b in s.buckets]
    x_max = max(s.span_s, s.bucket_s)
    latency = line_chart(
        "Round-trip latency (ms)",
        [
            Line("p50", "#3f88c5", [(x, b.p50_ms) for x, b in mid]),
            Line("p99", "#e4572e", [(x, b.p99_ms) for x, b in mid]),
        ],
        s.windows,
        x_max=x_max,
    )
    throughput = line_chart(
        "Throughput (messages/s)",
        [
            Line("sent", "#8d99ae", [(x, b.sent * per_s) for x, b in mid]),
            Line("received", "#2e8b57", [(x, b.received * per_s) for x, b in mid]),
        ],
        s.windows,
        x_max=x_max,
    )
    errors = line_chart(
        "Client errors (per s) and connects (per s)",
        [
            Line("errors", "#c0392b", [(x, b.errors * per_s) for x, b in mid]),
            Line("connects", "#7b5ea7", [(x, b.connects * per_s) for x, b in mid]),
        ],
        s.windows,
        x_max=x_max,
    )
    windows = _table(
        ["fault", "type", "proxy", "from (s)", "to (s)"],
        (
            [
                f'<td><span class="swatch" style="background:{fault_colour(w.fault_type)}">'
                f"</span>{escape(w.label)}</td>",
                _td(w.fault_type),
                _td(w.proxy),
                _td(_num(w.start_s, 1), num=True),
                _td("still active" if w.end_s is None else _num(w.end_s, 1), num=True),
            ]
            for w in s.windows
        ),
    )
    return (
        '<h2 id="timeline">Timeline</h2>'
        f'<p class="meta">Buckets of {s.bucket_s:g} s from the start of the run; shaded bands are '
        "the fault windows.</p>"
        f"{latency}{throughput}{errors}<h3>Fault windows</h3>{windows}"
    )


def _availability(f: Findings) -> str:
    rows = [
        [
            _td(a.scope if not a.scope_key else f"{a.scope}: {a.scope_key}"),
            _td(_num(a.availability_pct, 3, " %"), num=True),
            _td(a.episodes, num=True),
            _td(_num(a.mttr_s, 2, " s"), num=True),
            _td(_num(a.episode_median_s, 2, " s"), num=True),
            _td(_num(a.episode_max_s, 2, " s"), num=True),
            _td(_num(a.mtbf_s, 2, " s"), num=True),
            _td(_num(a.observed_s, 1, " s"), num=True),
        ]
        for a in f.availability
    ]
    recoveries = _table(
        ["scope", "recoveries", "still failing", "p50", "p95", "max", "mean"],
        (
            [
                _td(r.scope if not r.scope_key else f"{r.scope}: {r.scope_key}"),
                _td(r.recoveries, num=True),
                _td(r.unrecovered, num=True),
                _td(_num(r.p50_ms, 0, " ms"), num=True),
                _td(_num(r.p95_ms, 0, " ms"), num=True),
                _td(_num(r.max_ms, 0, " ms"), num=True),
                _td(_num(r.mean_ms, 0, " ms"), num=True),
            ]
            for r in f.recoveries
        ),
    )
    episodes = _table(
        [
            "scope",
            "started",
            "duration",
            "faults",
            "time to impact",
            "time to recover",
            "error classes",
        ],
        (
            [
                _td(e.scope if not e.scope_key else f"{e.scope}: {e.scope_key}"),
                _td(_when(e.started_ns)),
                _td(
                    "open" if e.duration_ms is None else _num(e.duration_ms / 1000, 2, " s"),
                    num=True,
                ),
                _td(fault_attribution(e.faults_active, e.faults_after)),
                _td(_num(e.time_to_impact_ms, 0, " ms"), num=True),
                _td(_num(e.time_to_recover_ms, 0, " ms"), num=True),
                _td(", ".join(f"{k}×{n}" for k, n in sorted(e.error_classes.items())) or "–"),
            ]
            for e in f.episodes
        ),
    )
    return (
        '<h2 id="availability">Availability and MTTR</h2>'
        + _table(
            [
                "scope",
                "availability",
                "episodes",
                "MTTR (mean)",
                "median",
                "longest",
                "MTBF",
                "observed",
            ],
            rows,
        )
        + "<h3>User-experienced recovery</h3>"
        + '<p class="meta">Per session: its first failure to its first success after it.</p>'
        + recoveries
        + "<h3>Failure episodes</h3>"
        + episodes
    )


MAX_VIOLATION_ROWS = 200


def _violations(f: Findings) -> str:
    pairs: dict[tuple[str, str, str], int] = {}
    for v in f.violations:
        key = (v.violation, v.origin_tenant, v.victim_tenant)
        pairs[key] = pairs.get(key, 0) + 1
    summary = ""
    if f.violations:
        summary = (
            f'<p class="meta">{len(f.violations):,} messages reached a session they must not '
            "reach (tenant: another tenant's; user: another session's private reply; "
            "subscription: a channel it never subscribed to): "
            + "; ".join(
                f"{kind} {escape(o)} → {escape(vt)}: {n:,}"
                for (kind, o, vt), n in sorted(pairs.items())
            )
            + ".</p>"
        )
    shown = f.violations[:MAX_VIOLATION_ROWS]
    more = ""
    if len(f.violations) > len(shown):
        more = (
            f'<p class="meta">The first {len(shown)} are listed; all '
            f"{len(f.violations):,} are in results.json.</p>"
        )
    return (
        '<h2 id="isolation">Isolation violations</h2>'
        + summary
        + _table(
            [
                "seen",
                "victim tenant",
                "victim session",
                "victim trace",
                "origin tenant",
                "origin session",
                "origin trace",
                "faults",
            ],
            (
                [
                    _td(_when(v.seen_ns)),
                    _td(v.victim_tenant),
                    _td(v.victim_session),
                    f"<td><code>{escape(v.victim_trace_id or '–')}</code></td>",
                    _td(v.origin_tenant),
                    _td(v.origin_session or "–"),
                    f"<td><code>{escape(v.origin_trace_id or '–')}</code></td>",
                    _td(fault_attribution(v.faults_active, v.faults_after)),
                ]
                for v in shown
            ),
        )
        + more
    )


def _integrity(f: Findings) -> str:
    return '<h2 id="integrity">Integrity</h2>' + _table(
        ["scope", "sent", "received", "lost", "duplicated", "reordered", "corrupted"],
        (
            [
                _td(i.scope if not i.scope_key else f"{i.scope}: {i.scope_key}"),
                *(
                    _td(getattr(i, k), num=True)
                    for k in ("sent", "received", "lost", "duplicated", "reordered", "corrupted")
                ),
            ]
            for i in f.integrity
        ),
    )


def _latency(f: Findings) -> str:
    return '<h2 id="latency">Latency by phase</h2>' + _table(
        ["scope", "phase", "count", "p50", "p95", "p99", "p99.9", "max"],
        (
            [
                _td(x.scope if not x.scope_key else f"{x.scope}: {x.scope_key}"),
                _td(x.phase or "whole run"),
                _td(x.count, num=True),
                *(
                    _td(_num(getattr(x, k), 1, " ms"), num=True)
                    for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")
                ),
            ]
            for x in f.latency
        ),
    )


def _phases(f: Findings) -> str:
    return '<h2 id="phases">Steady state by phase</h2>' + _table(
        ["phase", "status", "failed checks"],
        (
            [
                _td(v.phase),
                _td("pass" if v.passed else "FAIL", cls="status"),
                _td("; ".join(v.reasons) or "–"),
            ]
            for v in f.phase_verdicts
        ),
        cls=["passed" if v.passed else "failed" for v in f.phase_verdicts],
    )


def _comparison(c: Comparison | None) -> str:
    if c is None:
        return ""
    verdict = {True: "PASS", False: "FAIL", None: "no verdict"}[c.baseline_passed]

    def delta_cls(worse: bool | None) -> str:
        return "" if worse is None else ("worse" if worse else "better")

    return (
        f'<h2 id="baseline">Compared with baseline run {escape(c.baseline_run_id)}</h2>'
        f'<p class="meta">Baseline verdict: {verdict}.</p>'
        + _table(
            ["figure", "this run", "baseline", "change"],
            (
                [
                    _td(r.metric),
                    _td(_num(r.current, 2, r.unit), num=True),
                    _td(_num(r.baseline, 2, r.unit), num=True),
                    _td(
                        "–" if r.delta is None else f"{r.delta:+,.2f}{r.unit}",
                        num=True,
                        cls=delta_cls(r.worse),
                    ),
                ]
                for r in c.rows
            ),
        )
    )


def render_html(data: RunData, comparison: Comparison | None = None) -> str:
    f = Findings(data.records())
    m = data.meta
    duration = (
        "–"
        if m.started_ns is None or m.ended_ns is None
        else f"{(m.ended_ns - m.started_ns) / 1e9:.1f} s"
    )
    title = m.title or m.experiment_id
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">experiment <code>{escape(m.experiment_id)}</code> · run '
        f"<code>{escape(m.run_id)}</code> · started {_when(m.started_ns)} UTC · duration "
        f"{duration} · status {escape(m.status)}</p>",
        _verdict(f, data),
        _charts(data),
        _availability(f),
        '<h2 id="cascade">Cascade</h2>' + cascade_graph(f.cascades),
        _violations(f),
        _integrity(f),
        _latency(f),
        _phases(f),
        _comparison(comparison),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} — Aftershock report</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n"
    )
