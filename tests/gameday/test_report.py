"""Report renderings from a golden run: HTML, JUnit, Markdown, results.json, and the HTML as
a real headless Chromium renders it."""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

import pytest

from aftershock.report import read_results, write_reports
from aftershock.report.html import render_html, trace_ref
from aftershock.report.model import Findings
from aftershock.report.text import render_junit
from tests.gameday.golden import ORIGIN_TRACE, VICTIM_TRACE, golden_events, golden_run, series_of

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_series_buckets_and_deduplicated_fault_windows() -> None:
    series = Findings(series_of(golden_events())).series
    assert [(w.fault_id, w.fault_type, w.start_s, w.end_s) for w in series.windows] == [
        ("message-latency", "latency", 10.0, 20.0),
        ("redis-outage", "proxy_disabled", 30.0, 40.0),
    ]
    by_start = {b.start_s: b for b in series.buckets}
    assert by_start[5.0].sent == 2
    assert by_start[5.0].errors == 0
    assert by_start[15.0].p99_ms == pytest.approx(250.0, rel=0.01)  # the sketch's accuracy
    assert by_start[35.0].errors == 2
    assert by_start[35.0].received == 0
    assert sum(b.sent for b in series.buckets) == 120


def test_html_has_verdict_violations_and_shaded_windows() -> None:
    html = render_html(golden_run())
    assert "Verdict: FAIL" in html
    assert "availability 83.333% below 95%" in html
    assert "isolation_violations 1 exceeds 0" in html
    assert VICTIM_TRACE in html
    # violations are grouped: origin → victim tenant, with counts and example victim traces
    assert ORIGIN_TRACE not in html
    # three charts, each with both fault windows shaded
    assert len(re.findall(r'class="fault-window" data-fault="redis-outage"', html)) == 3
    assert len(re.findall(r'class="fault-window" data-fault="message-latency"', html)) == 3
    assert 'data-target="gateway"' in html  # cascade graph node
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_passing_run_says_pass() -> None:
    html = render_html(golden_run("run-b", failing=False))
    assert "Verdict: PASS" in html
    assert "Verdict: FAIL" not in html


def test_junit_has_one_case_per_slo_and_failures_for_failing_ones() -> None:
    root = ET.fromstring(render_junit(golden_run()))
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"gateway:availability", "gateway:p99_latency", "isolation_violations"}
    assert cases["gateway:p99_latency"].find("failure") is None
    failure = cases["isolation_violations"].find("failure")
    assert failure is not None
    assert failure.get("message") == "isolation_violations 1 exceeds 0"
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "2"
    # every SLO case took the run's real time, not 0
    assert {c.get("time") for c in cases.values()} == {"60.000"}


def test_junit_of_an_interrupted_run_has_an_error_case() -> None:
    data = golden_run("run-b", failing=False)
    data = data.model_copy(
        update={"meta": data.meta.model_copy(update={"status": "interrupted", "note": "Ctrl-C"})}
    )
    data = data.model_copy(update={"results": [
        r | {"run_status": "interrupted", "interrupted": "Ctrl-C"}
        if r["kind"] == "result.verdict" and not r["phase"] else r
        for r in data.results
    ]})  # fmt: skip
    root = ET.fromstring(render_junit(data))
    err = root.find("testsuite/testcase[@name='run']/error")
    assert err is not None
    assert err.get("message") == "run interrupted: Ctrl-C"


def test_run_directory_round_trip_with_baseline(tmp_path: Path) -> None:
    run = golden_run()
    paths = write_reports(tmp_path, run, golden_run("run-b", failing=False))
    assert sorted(p.name for p in paths) == [
        "junit.xml",
        "report.html",
        "results.json",
        "summary.md",
    ]
    again = read_results(tmp_path)
    assert again == run
    summary = (tmp_path / "summary.md").read_text()
    assert "## Verdict: FAIL" in summary
    assert "Compared with baseline run run-b" in summary
    assert "| gateway: availability | 83.33 % | 100.00 % | -16.67 % (worse) |" in summary
    assert "redis → message (+120 ms) → gateway (+510 ms)" in summary


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_html_renders_in_headless_chromium(tmp_path: Path, procs: Processes) -> None:
    assert CHROMIUM is not None
    write_reports(tmp_path, golden_run(), golden_run("run-b", failing=False))
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (tmp_path / "report.html").as_uri()
    dumped = procs.run([*base, "--dump-dom", url], text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr
    dom = dumped.stdout
    # The DOM Chromium built holds the verdict, the charts and the violation row.
    assert "Verdict: FAIL" in dom
    assert dom.count("<svg") == 4
    assert VICTIM_TRACE in dom
    assert dom.index("Verdict: FAIL") < dom.index("Recovery") < dom.index("Timeline")
    shot = tmp_path / "report.png"
    shooting = procs.run(
        [*base, f"--screenshot={shot}", "--window-size=1100,2400", url], timeout=120
    )
    assert shooting.returncode == 0, shooting.stderr
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 20_000


def test_trace_ids_render_through_one_function() -> None:
    assert trace_ref(VICTIM_TRACE) == f"<code>{VICTIM_TRACE}</code>"
    assert trace_ref(None) == "–"
    linked = trace_ref(VICTIM_TRACE, "http://127.0.0.1:16686/trace/{trace_id}")
    assert linked == (
        f'<a href="http://127.0.0.1:16686/trace/{VICTIM_TRACE}"><code>{VICTIM_TRACE}</code></a>'
    )


def test_sent_and_received_have_their_own_axes() -> None:
    html = render_html(golden_run())
    assert "received (left axis), sent (right axis)" in html
    assert "sent (right axis)</text>" in html
