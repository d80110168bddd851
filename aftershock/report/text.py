"""The Markdown summary and the JUnit XML of a run.

Both render the one run verdict (``result.verdict``, phase empty): JUnit holds one test case
per SLO check and per run of a steady-state hypothesis probe, with their real durations, and
one per part of the verdict that can fail besides (a target that had not recovered, a
safeguard that stopped the run, an interruption), so a CI pipeline that reads JUnit fails
exactly when the run's exit status does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from aftershock.report.model import Findings, TimeBase, check_status, fault_attribution
from spine.settings import Settings
from spine.telemetry import trace_link

if TYPE_CHECKING:
    from aftershock.report.compare import Comparison
    from aftershock.report.model import RunData


def _trace(trace_id: str | None, template: str | None) -> str:
    """A trace id, linked to the trace viewer when ``template`` (the ``trace_url_template``
    setting, read once per report) is set."""
    if not trace_id:
        return "`–`"
    link = trace_link(trace_id, template) if template else None
    return f"[`{trace_id}`]({link})" if link else f"`{trace_id}`"


def _n(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict_md(f: Findings, tb: TimeBase) -> list[str]:
    v = f.verdict
    lines = [f"## Verdict: {f.state}", ""]
    if v is None:
        return [*lines, "- the analyzers produced no run verdict (no client events were analysed)"]
    lines += [f"- {_cell(r)}" for r in v.reasons]
    lines += ["", "### Recovery", "", f.recovery_sentence(tb), ""]
    failed = [t for t in v.recovery if t.episodes]
    if failed:
        lines += ["| target | episodes | recovered | at |", "|---|---:|---|---:|"]
        lines += [
            f"| {_cell(t.target)} | {t.episodes} | {'yes' if t.recovered else 'NO'} "
            f"| {tb.at(t.recovered_ns)} |"
            for t in failed
        ]
        lines.append("")
    lines += ["### Steady-state hypothesis", ""]
    if v.hypothesis:
        lines += ["| probe | when | at | duration | result |", "|---|---|---:|---:|---|"]
        lines += [
            f"| {_cell(p.probe)} | {p.when} the method | {tb.at(p.started_ns)} "
            f"| {p.duration_s:.2f} s | {'met' if p.met else 'DEVIATED: ' + _cell(p.reason)} |"
            for p in v.hypothesis
        ]
    else:
        lines.append("No hypothesis probe ran.")
    lines += ["", "### SLO checks", ""]
    if v.checks:
        lines += ["| SLO check | status | observed | threshold |", "|---|---|---:|---:|"]
        lines += [
            f"| {_cell(c.name)} | {check_status(c)} | {_n(c.observed, 3)} | {_n(c.threshold, 3)} |"
            for c in v.checks
        ]
    else:
        lines.append("No SLO was set.")
    if v.safeguards:
        lines += ["", "### Safeguards", ""]
        lines += [f"- stopped the run: {_cell(s)}" for s in v.safeguards]
    return lines


def render_markdown(data: RunData, comparison: Comparison | None = None) -> str:
    f = Findings(data.records())
    m = data.meta
    tb = f.timebase(m)
    lines = [
        f"# {m.title or m.experiment_id}",
        "",
        f"Experiment `{m.experiment_id}`, run `{m.run_id}`, status {m.status}. {tb.statement()}",
        "",
        *_verdict_md(f, tb),
        "",
        "## Availability and MTTR",
        "",
    ]
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
    for w in f.series.windows:
        end = "the end" if w.end_s is None else f"{w.end_s:.1f} s"
        lines.append(f"- `{w.fault_id}` ({w.fault_type} on {w.proxy}): {w.start_s:.1f} s → {end}")
    if not f.series.windows:
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
    lines += ["", f"## Isolation violations: {f.violation_count}", ""]
    groups = f.violation_groups
    if groups:
        template = Settings().trace_url_template
        lines += [
            "| kind | target | origin → victim tenant | faults | count | first | last "
            "| example traces |",
            "|---|---|---|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {g.violation} | {_cell(g.target or '–')} "
            f"| {_cell(g.origin_tenant)} → {_cell(g.victim_tenant)} "
            f"| {_cell(fault_attribution(g.faults_active, g.faults_after))} | {g.count:,} "
            f"| {tb.at(g.first_ns)} | {tb.at(g.last_ns)} "
            f"| {', '.join(_trace(t, template) for t in g.example_trace_ids) or '–'} |"
            for g in groups
        ]
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
    """JUnit XML: a suite for the run verdict's SLO checks, one for the steady-state
    hypothesis (a case per probe run) and one for the rest of the verdict (recovery of each
    target that failed, safeguards, how the run ended)."""
    f = Findings(data.records())
    m = data.meta
    v = f.verdict
    tb = f.timebase(m)
    classname = f"aftershock.{m.experiment_id}"
    suites = ET.Element("testsuites", name=f"aftershock {m.experiment_id}")
    run_s = tb.duration_s(m)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def suite(name: str) -> tuple[ET.Element, dict[str, float]]:
        el = ET.SubElement(suites, "testsuite", name=f"{name}.{m.experiment_id}")
        return el, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}

    def case(
        parent: tuple[ET.Element, dict[str, float]],
        name: str,
        time_s: float,
        *,
        failure: str | None = None,
        error: str | None = None,
        skipped: str | None = None,
        out: str = "",
        kind: str = "Failure",
    ) -> None:
        el, counts = parent
        c = ET.SubElement(el, "testcase", classname=classname, name=name, time=f"{time_s:.3f}")
        counts["tests"] += 1
        counts["time"] += time_s
        if failure is not None:
            counts["failures"] += 1
            ET.SubElement(c, "failure", message=failure, type=kind).text = out or None
        elif error is not None:
            counts["errors"] += 1
            ET.SubElement(c, "error", message=error, type=kind)
        elif skipped is not None:
            counts["skipped"] += 1
            ET.SubElement(c, "skipped", message=skipped)
        if out and failure is None:
            ET.SubElement(c, "system-out").text = out

    slo = suite("slo")
    hyp = suite("hypothesis")
    run = suite("run")
    for c in v.checks if v is not None else []:
        detail = f"observed {_n(c.observed, 3)}, threshold {_n(c.threshold, 3)}"
        if c.status == "no_data":
            if c.passed:
                case(slo, c.name, run_s, skipped="no data", out=detail)
            else:
                case(slo, c.name, run_s, failure=c.reason, out=detail, kind="SloNoData")
        elif not c.passed:
            case(slo, c.name, run_s, failure=c.reason or f"{c.name} failed", out=detail,
                 kind="SloViolation")  # fmt: skip
        else:
            case(slo, c.name, run_s, out=detail)
    seen: dict[tuple[str, str], int] = {}
    for p in v.hypothesis if v is not None else []:
        n = seen[(p.probe, p.when)] = seen.get((p.probe, p.when), 0) + 1
        name = f"{p.probe} ({p.when} the method, run {n}, at {tb.at(p.started_ns)})"
        if p.met:
            case(hyp, name, p.duration_s)
        else:
            case(hyp, name, p.duration_s, failure=f"deviated: {p.reason}", kind="Deviation")
    for t in v.recovery if v is not None else []:
        if not t.episodes:
            continue
        name = f"{t.target} recovered before the end"
        if t.recovered:
            case(run, name, run_s, out=f"recovered at {tb.at(t.recovered_ns)}")
        else:
            case(run, name, run_s, failure=f"{t.target} had not recovered when the run ended",
                 kind="NotRecovered")  # fmt: skip
    for s in v.safeguards if v is not None else []:
        case(run, "safeguards", run_s, failure=f"stopped by a safeguard: {s}", kind="Safeguard")
    if v is None or v.run_status not in (None, "completed", "failed"):
        why = "no run verdict" if v is None else f"run {v.run_status}"
        note = m.note or (v.interrupted if v is not None else None)
        case(run, "run", run_s, error=why + (f": {note}" if note else ""), kind="RunIncomplete")
    else:
        other = [r for r in v.reasons if r.startswith("run ")]
        if other:
            case(run, "run", run_s, failure="; ".join(other), kind="RunFailed")
        else:
            case(run, "run", run_s, out=f"run {v.run_status or m.status}")
    for el, counts in (slo, hyp, run):
        for k in ("tests", "failures", "errors", "skipped"):
            el.set(k, str(int(counts[k])))
            totals[k] += int(counts[k])
        el.set("time", f"{counts['time']:.3f}")
    for k, n in totals.items():
        suites.set(k, str(n))
    suites.set("time", f"{run_s:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
