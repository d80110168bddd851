"""The report renders what the analyzers found: user-experienced recovery, the spread of
episode durations, and whether each finding came during its fault or after it."""

from __future__ import annotations

from aftershock.report.html import render_html
from aftershock.report.model import RunData, RunMeta
from aftershock.report.text import render_markdown
from analyzers.core import Analyzer, AnalyzerConfig
from schemas.targets import Target, TargetGraph
from tests.analyzers.build import EXP, T0, probe, toxic_added, toxic_removed


def test_report_shows_recovery_spread_and_during_or_after() -> None:
    graph = TargetGraph(
        targets=[
            Target(name="db", upstream="127.0.0.1:1", proxy="db-proxy"),
            Target(name="gw", upstream="127.0.0.1:2", depends_on=["db"]),
        ]
    )
    events = [
        toxic_added(10_000, "db-proxy", "cut", fault_id="cut"),
        toxic_removed(12_000, "db-proxy", "cut"),
    ]
    events += probe(0, 40_000, [(10_000, 12_000)], target="db", session="d1")
    # the gateway fails 1 s after the fault ended, for 3 s
    events += probe(0, 40_000, [(13_000, 16_000)], target="gw", session="g1")
    a = Analyzer(EXP, AnalyzerConfig(graph=graph))
    a.ingest(sorted(events, key=lambda e: e.ts_ns))
    a.finish()
    meta = RunMeta(
        experiment_id=EXP, run_id="run-1", title="t", started_ns=T0, ended_ns=T0 + 40 * 10**9,
        status="completed",
    )  # fmt: skip
    data = RunData.of(meta, a.results())
    text = render_markdown(data)
    assert "User-experienced recovery" in text
    assert "| target: gw | 1 | 0 | 3,000 ms | 3,000 ms | 3,000 ms |" in text
    assert "| fault: cut | 2 | 0 | 2,000 ms | 3,000 ms | 3,000 ms |" in text
    assert "gw (+3000 ms, after the fault ended)" in text
    assert "| target: gw | 92.500 % | 1 | 3.00 s | 3.00 s | 3.00 s | 37.00 s |" in text
    html = render_html(data)
    assert "User-experienced recovery" in html
    assert "cut (after)" in html
    assert "cut (during)" in html
