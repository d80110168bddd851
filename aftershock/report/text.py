"""The Markdown summary and the JUnit XML of a run.

JUnit holds one test case per SLO check of the run verdict, so a CI pipeline that reads JUnit
fails exactly on the SLOs that failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from aftershock.report.model import Findings

if TYPE_CHECKING:
    from aftershock.report.compare import Comparison
    from aftershock.report.model import RunData


def _n(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: RunData, comparison: Comparison | None = None) -> str:
    f = Findings(data.records())
    m = data.meta
    v = f.verdict
    state = "NO VERDICT" if v is None else ("PASS" if v.passed else "FAIL")
    lines = [
        f"# {m.title or m.experiment_id}",
        "",
        f"Experiment `{m.experiment_id}`, run `{m.run_id}`, status {m.status}.",
        "",
        f"## Verdict: {state}",
        "",
    ]
    if v is not None:
        lines += [f"- {r}" for r in v.reasons]
        if m.status != "completed" or m.note:
            lines.append(f"- run {m.status}" + (f": {m.note}" if m.note else ""))
        lines += ["", "| SLO check | status | observed | threshold |", "|---|---|---:|---:|"]
        lines += [
            f"| {_cell(c.name)} | {'pass' if c.passed else 'FAIL'} | {_n(c.observed, 3)} "
            f"| {_n(c.threshold, 3)} |"
            for c in v.checks
        ]
    lines += ["", "## Availability and MTTR", ""]
    if f.availability:
        lines += [
            "| scope | availability | episodes | MTTR (mean) | median | longest | MTBF |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {a.scope}{': ' + a.scope_key if a.scope_key else ''} "
            f"| {_n(a.availability_pct, 3, ' %')} | {a.episodes} | {_n(a.mttr_s, 2, ' s')} "
            f"| {_n(a.episode_median_s, 2, ' s')} | {_n(a.episode_max_s, 2, ' s')} "
            f"| {_n(a.mtbf_s, 2, ' s')} |"
            for a in f.availability
        ]
    else:
        lines.append("No availability figures.")
    if f.recoveries:
        lines += [
            "",
            "User-experienced recovery (per session: first failure → first success after it):",
            "",
            "| scope | recoveries | still failing | p50 | p95 | max |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.scope}{': ' + r.scope_key if r.scope_key else ''} | {r.recoveries} "
            f"| {r.unrecovered} | {_n(r.p50_ms, 0, ' ms')} | {_n(r.p95_ms, 0, ' ms')} "
            f"| {_n(r.max_ms, 0, ' ms')} |"
            for r in f.recoveries
        ]
    lines += ["", "## Faults", ""]
    for w in data.series.windows:
        end = "end" if w.end_s is None else f"{w.end_s:.1f} s"
        lines.append(f"- `{w.label}` ({w.fault_type} on {w.proxy}): {w.start_s:.1f} s → {end}")
    if not data.series.windows:
        lines.append("No faults were injected.")
    lines += ["", "## Cascade", ""]
    for c in f.cascades:
        chain = " → ".join(
            [
                c.origin_target,
                *(
                    f"{h.target} (+{h.failed_after_ms:.0f} ms"
                    + (", after the fault ended)" if h.relation == "after" else ")")
                    for h in c.hops
                ),
            ]
        )
        lines.append(
            f"- `{c.fault_id}`: {chain}; {'contained' if c.contained else 'not contained'}, "
            f"{c.blast_sessions} sessions of {c.blast_tenants} tenants affected"
        )
    if not f.cascades:
        lines.append("No fault propagated to a target.")
    lines += ["", f"## Isolation violations: {len(f.violations)}", ""]
    if f.violations:
        lines += [
            "| victim tenant | victim session | victim trace | origin tenant | origin trace |",
            "|---|---|---|---|---|",
        ]
        for x in f.violations[:50]:
            lines.append(
                f"| {_cell(x.victim_tenant)} | {_cell(x.victim_session)} "
                f"| `{x.victim_trace_id or '–'}` | {_cell(x.origin_tenant)} "
                f"| `{x.origin_trace_id or '–'}` |"
            )
        if len(f.violations) > 50:
            lines.append(f"\n({len(f.violations) - 50} more in results.json)")
    i = f.overall_integrity()
    lines += ["", "## Integrity", ""]
    if i is None:
        lines.append("No integrity figures.")
    else:
        lines.append(
            f"sent {i.sent:,}, received {i.received:,}, lost {i.lost:,}, duplicated "
            f"{i.duplicated:,}, reordered {i.reordered:,}, corrupted {i.corrupted:,}"
        )
    if comparison is not None:
        lines += [
            "",
            f"## Compared with baseline run {comparison.baseline_run_id}",
            "",
            "| figure | this run | baseline | change |",
            "|---|---:|---:|---:|",
        ]
        for r in comparison.rows:
            delta = "–" if r.delta is None else f"{r.delta:+,.2f}{r.unit}"
            lines.append(
                f"| {_cell(r.metric)} | {_n(r.current, 2, r.unit)} | {_n(r.baseline, 2, r.unit)} "
                f"| {delta}{' (worse)' if r.worse else ''} |"
            )
    return "\n".join(lines) + "\n"


def render_junit(data: RunData) -> str:
    """JUnit XML: a suite for the run, one test case per SLO check of the run verdict. A run
    without a verdict, or one that did not complete, gets an ``errored`` test case."""
    f = Findings(data.records())
    m = data.meta
    suites = ET.Element("testsuites", name=f"aftershock {m.experiment_id}")
    suite = ET.SubElement(suites, "testsuite", name=f"slo.{m.experiment_id}")
    failures = errors = tests = 0
    classname = f"aftershock.{m.experiment_id}"
    for c in f.verdict.checks if f.verdict is not None else []:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name=c.name, time="0")
        detail = f"observed {_n(c.observed, 3)}, threshold {_n(c.threshold, 3)}"
        if not c.passed:
            failures += 1
            failure = ET.SubElement(case, "failure", message=c.reason or f"{c.name} failed")
            failure.set("type", "SloViolation")
            failure.text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    if f.verdict is None or m.status not in ("completed", "failed"):
        tests += 1
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name="run", time="0")
        why = "no run verdict" if f.verdict is None else f"run {m.status}"
        err = ET.SubElement(case, "error", message=why + (f": {m.note}" if m.note else ""))
        err.set("type", "RunIncomplete")
    duration = 0.0
    if m.started_ns is not None and m.ended_ns is not None:
        duration = max(0.0, (m.ended_ns - m.started_ns) / 1e9)
    for el in (suites, suite):
        el.set("tests", str(tests))
        el.set("failures", str(failures))
        el.set("errors", str(errors))
        el.set("time", f"{duration:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
