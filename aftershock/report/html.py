"""The self-contained HTML report: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from aftershock.report.model import Findings, check_status, fault_attribution
from aftershock.report.svg import Line, Mark, cascade_graph, fault_colour, line_chart
from spine.settings import Settings
from spine.telemetry import trace_link

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aftershock.report.compare import Comparison
    from aftershock.report.model import RunData, TimeBase

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
th{background:#eef1f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def trace_ref(trace_id: str | None, template: str | None = None) -> str:
    """A trace id as the report shows it, linked to the trace viewer when a URL template with
    ``{trace_id}`` is given."""
    if not trace_id:
        return "–"
    code = f"<code>{escape(trace_id)}</code>"
    link = trace_link(trace_id, template) if template else None
    return code if link is None else f'<a href="{escape(link)}">{code}</a>'


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


def _verdict(f: Findings, tb: TimeBase) -> str:
    v = f.verdict
    state = {"PASS": "pass", "FAIL": "fail"}.get(f.state, "unknown")
    if v is None:
        reasons = ["the analyzers produced no run verdict (no client events were analysed)"]
    else:
        reasons = list(v.reasons)
    items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    head = (
        f'<section class="verdict {state}" id="verdict"><h2>Verdict: {f.state}</h2>'
        + (f"<ul>{items}</ul>" if items else "")
        + "</section>"
    )
    if v is None:
        return head
    failed = [t for t in v.recovery if t.episodes]
    recovery = f'<h3 id="recovery">Recovery</h3><p>{escape(f.recovery_sentence(tb))}</p>'
    if failed:
        recovery += _table(
            ["target", "episodes", "recovered", "at"],
            (
                [
                    _td(t.target),
                    _td(t.episodes, num=True),
                    _td("yes" if t.recovered else "NO", cls="status"),
                    _td(tb.at(t.recovered_ns), num=True),
                ]
                for t in failed
            ),
            cls=["passed" if t.recovered else "failed" for t in failed],
        )
    hypothesis = '<h3 id="hypothesis">Steady-state hypothesis</h3>' + (
        _table(
            ["probe", "when", "at", "duration", "result"],
            (
                [
                    _td(p.probe),
                    _td(f"{p.when} the method"),
                    _td(tb.at(p.started_ns), num=True),
                    _td(_num(p.duration_s, 2, " s"), num=True),
                    _td("met" if p.met else f"DEVIATED: {p.reason}", cls="status"),
                ]
                for p in v.hypothesis
            ),
            cls=["passed" if p.met else "failed" for p in v.hypothesis],
        )
        if v.hypothesis
        else '<p class="empty">No hypothesis probe ran.</p>'
    )
    checks = '<h3 id="slos">SLO checks</h3>' + _table(
        ["SLO check", "status", "observed", "threshold", "reason"],
        (
            [
                _td(c.name),
                _td(check_status(c), cls="status"),
                _td(_num(c.observed, 3), num=True),
                _td(_num(c.threshold, 3), num=True),
                _td(c.reason),
            ]
            for c in v.checks
        ),
        cls=["passed" if c.passed else "failed" for c in v.checks],
    )
    safeguards = ""
    if v.safeguards:
        safeguards = (
            '<h3 id="safeguards">Safeguards</h3><ul>'
            + "".join(f"<li>stopped the run: {escape(s)}</li>" for s in v.safeguards)
            + "</ul>"
        )
    return head + recovery + hypothesis + checks + safeguards


def _charts(f: Findings, tb: TimeBase) -> str:
    s = f.series
    probes = f.verdict.hypothesis if f.verdict is not None else []
    marks = [
        Mark(
            tb.seconds(p.started_ns),
            f"{p.probe} ({p.when} the method): {'met' if p.met else 'DEVIATED'}",
            p.met,
        )
        for p in probes
    ]
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
        marks=marks,
    )
    throughput = line_chart(
        "Messages per second: received (left axis), sent (right axis)",
        [
            Line("received", "#2e8b57", [(x, b.received * per_s) for x, b in mid]),
            Line("sent", "#5b6673", [(x, b.sent * per_s) for x, b in mid], right=True),
        ],
        s.windows,
        x_max=x_max,
    )
    errors = line_chart(
        "Client failures per second (left axis), connects per second (right axis)",
        [
            Line("failures", "#c0392b", [(x, b.errors * per_s) for x, b in mid]),
            Line("connects", "#7b5ea7", [(x, b.connects * per_s) for x, b in mid], right=True),
        ],
        s.windows,
        x_max=x_max,
    )
    windows = _table(
        ["fault", "type", "proxy", "from", "to"],
        (
            [
                f'<td><span class="swatch" style="background:{fault_colour(w.fault_type)}">'
                f"</span>{escape(w.fault_id)}</td>",
                _td(w.fault_type),
                _td(w.proxy),
                _td(_num(w.start_s, 1, " s"), num=True),
                _td("still active" if w.end_s is None else _num(w.end_s, 1, " s"), num=True),
            ]
            for w in s.windows
        ),
    )
    return (
        '<h2 id="timeline">Timeline</h2>'
        f'<p class="meta">Buckets of {s.bucket_s:g} s; shaded bands are the fault windows; '
        "dashed lines on the latency chart are steady-state probe runs (green met, red "
        "deviated).</p>"
        f"{latency}{throughput}{errors}<h3>Fault windows</h3>{windows}"
    )


def _availability(f: Findings, tb: TimeBase) -> str:
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
            "target",
            "started",
            "duration",
            "faults",
            "time to impact",
            "time to recover",
            "error classes",
        ],
        (
            [
                _td(e.scope_key),
                _td(tb.at(e.started_ns), num=True),
                _td(
                    "open" if e.duration_ms is None else _num(e.duration_ms / 1000, 2, " s"),
                    num=True,
                ),
                _td(fault_attribution(e.faults_active, e.faults_after)),
                _td(_num(e.time_to_impact_ms, 0, " ms"), num=True),
                _td(_num(e.time_to_recover_ms, 0, " ms"), num=True),
                _td(", ".join(f"{k}×{n}" for k, n in sorted(e.error_classes.items())) or "–"),
            ]
            for e in f.target_episodes()
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
        + "<h3>Failure episodes of targets</h3>"
        '<p class="meta">Tenants and the whole system go through the same outages; their '
        "episode counts are in the table above.</p>" + episodes
    )


def _violations(f: Findings, tb: TimeBase, template: str | None) -> str:
    groups = f.violation_groups
    summary = ""
    if groups:
        summary = (
            f'<p class="meta">{_count(f.violation_count, "message")} reached a session they '
            f"must never reach (tenant: another tenant's; user: another session's private "
            f"reply; subscription: a channel it never subscribed to), in "
            f"{_count(len(groups), 'group')} (kind, target, origin tenant, victim tenant, "
            "faults); results.json has every group and the first few violations of each.</p>"
        )
    return (
        '<h2 id="isolation">Isolation violations</h2>'
        + summary
        + _table(
            [
                "kind",
                "target",
                "origin tenant",
                "victim tenant",
                "faults",
                "count",
                "first",
                "last",
                "example victim traces",
            ],
            (
                [
                    _td(g.violation),
                    _td(g.target or "–"),
                    _td(g.origin_tenant),
                    _td(g.victim_tenant),
                    _td(fault_attribution(g.faults_active, g.faults_after)),
                    _td(g.count, num=True),
                    _td(tb.at(g.first_ns), num=True),
                    _td(tb.at(g.last_ns), num=True),
                    "<td>"
                    + " ".join(trace_ref(t, template) for t in g.example_trace_ids)
                    + "</td>",
                ]
                for g in groups
            ),
        )
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
    return (
        '<h2 id="latency">Latency by phase</h2>'
        '<p class="meta">The whole system and each target; phases without a round trip are '
        "left out, per-tenant figures are in results.json.</p>"
    ) + _table(
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
            for x in f.latency_rows()
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


def render_html(
    data: RunData, comparison: Comparison | None = None, *, trace_url_template: str | None = None
) -> str:
    """The report; trace ids link to the trace viewer (see :func:`trace_ref`): by
    ``trace_url_template``, else by the setting of that name (read once)."""
    if trace_url_template is None:
        trace_url_template = Settings().trace_url_template
    f = Findings(data.records())
    m = data.meta
    tb = f.timebase(m)
    duration = (
        "–"
        if m.started_ns is None or m.ended_ns is None
        else f"{(m.ended_ns - m.started_ns) / 1e9:.1f} s"
    )
    title = m.title or m.experiment_id
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">experiment <code>{escape(m.experiment_id)}</code> · run '
        f"<code>{escape(m.run_id)}</code> · duration {duration} · status "
        f"{escape(m.status)}</p>",
        f'<p class="meta">{escape(tb.statement())}</p>',
        _verdict(f, tb),
        _charts(f, tb),
        _availability(f, tb),
        '<h2 id="cascade">Cascade</h2>' + cascade_graph(f.cascades),
        _violations(f, tb, trace_url_template),
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
