"""One fold, one verdict: every output of a run carries the same figures and the same verdict.

The same event log goes through the in-process live analysis of ``aftershock run``, a real
analyzer worker (Faust, on the embedded broker) and replay; the dashboard's final snapshot,
``results.json``, ``summary.md``, ``report.html`` and ``junit.xml`` of each agree. Then runs
that pass, fail an SLO, deviate from the steady-state hypothesis after the method, lack data
for an SLO that says no data fails, and are interrupted go through ``aftershock report``:
the exit code, the console, and every file say the same verdict for the same reasons.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import signal
import sys
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import pytest
from redis.asyncio import Redis

from aftershock.gameday.analysis import LiveAnalysis
from aftershock.gameday.dashboard import summary_line
from aftershock.gameday.live import LiveTap
from aftershock.report import RunData, RunMeta, write_reports
from aftershock.report.files import ANALYSIS_FILE, EVENTS_FILE, write_meta
from analyzers.core import Analyzer, AnalyzerConfig, SloSpec
from analyzers.replay import analyze_batches, read_run, replay_kafka
from schemas.events import ExperimentAborted, ExperimentEnded, Receive
from spine.eventlog.runlog import EVENTS_DIR, RunLogWriter
from spine.eventlog.sink import Fanout
from spine.store import read_results
from tests.analyzers.build import EXP
from tests.analyzers.live_scenario import CONFIG, LATE, LATE_BY_NS, MS, T0, S, scenario
from tests.analyzers.test_ordering_replay import held_up
from tests.analyzers.test_ordering_replay import scenario as ordering_scenario
from tests.analyzers.test_worker import Worker, comparable, produce, worker_env, worker_topics

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from schemas.events import Event
    from schemas.results import ResultEvent
    from spine.stack import EmbeddedStack
    from tests.processes import Processes

RENDERED = ("summary.md", "report.html", "junit.xml")
LEAKS = 12


def _with_leaks(events: list[Event]) -> list[Event]:
    """The scenario with ``LEAKS`` of acme's messages delivered to ``globex-1`` at 5 s."""
    who = {"experiment_id": "x", "run_id": "run-1", "generator_id": "g1", "tenant": "globex",
           "user": "u1", "session": "globex-1", "target": "gateway", "protocol": "ws"}  # fmt: skip
    leaks = [
        Receive(
            **who,
            ts_ns=T0 + 5 * S + i * 10 * MS,
            bytes=10,
            origin_tenant="acme",
            origin_session="acme-1",
            origin_seq=50 + i,
            checksum_ok=True,
        )
        for i in range(LEAKS)
    ]
    # in the scenario's emit order (its late generator's events come when they are due)
    return sorted(
        [*events, *leaks], key=lambda e: e.ts_ns + (LATE_BY_NS if e.generator_id == LATE else 0)
    )


def _events(exp: str, events: list[Event] | None = None) -> list[Event]:
    return [e.model_copy(update={"experiment_id": exp}) for e in events or scenario()]


def _meta(exp: str, status: str = "completed", note: str = "") -> RunMeta:
    return RunMeta.model_validate(
        {"experiment_id": exp, "run_id": "run-1", "title": "One truth", "started_ns": T0,
         "ended_ns": T0 + 10 * S, "status": status, "note": note}
    )  # fmt: skip


def _outputs(run_dir: Path, exp: str, results: list[ResultEvent]) -> dict[str, Any]:
    """Every output of a run with these results; the dashboard's last line too."""
    data = RunData.of(_meta(exp), results)
    write_reports(run_dir, data)
    tap = LiveTap(title="One truth", experiment_id=exp, run_id="run-1", planned_s=10.0,
                  now_s=lambda: 0.0)  # fmt: skip
    tap.update_results(data.records())
    out: dict[str, Any] = {name: (run_dir / name).read_text() for name in RENDERED}
    out["results"] = comparable(data.records())
    out["dashboard"] = summary_line(tap.snapshot())
    return out


async def _live(
    exp: str, events: list[Event], config: AnalyzerConfig = CONFIG
) -> list[ResultEvent]:
    """As ``aftershock run`` analyses in process: events emitted as they come, folded in
    steps, drained at the end."""
    analysis = LiveAnalysis(exp, config)
    fanout = Fanout(analysis)  # the analysis takes the bytes the publisher and local log take
    for i in range(0, len(events), 40):
        for ev in events[i : i + 40]:
            fanout.emit(ev)
        await analysis.step()
    return await analysis.drain(10.0)


@pytest.mark.slow
async def test_live_worker_and_replay_give_the_same_outputs(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    tag, topics = await worker_topics(stack)
    exp = f"fold-{tag}"
    # More isolation violations than the examples kept, allowed by the SLO: every path must
    # count all of them from the groups, and keep the same few examples.
    config = CONFIG.model_copy(update={"slos": [SloSpec(max_isolation_violations=LEAKS)]})
    events = _events(exp, _with_leaks(scenario()))
    live = await _live(exp, events, config)

    redis = Redis.from_url(stack.redis_url)
    await redis.set(f"aftershock:{exp}:analyzer-config", config.model_dump_json())
    await produce(stack.kafka_bootstrap, topics["events"], events)
    env = worker_env(stack, topics, tmp_path / "state")
    log = tmp_path / "worker.log"
    worker = Worker(procs, env, f"analyzers-{tag}", log)
    try:
        expected = comparable(live)
        worker_results: list[ResultEvent] = []
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline:
            worker_results = await read_results(redis, exp)
            if comparable(worker_results) == expected:
                break
            await asyncio.sleep(0.5)
        got = comparable(worker_results)
        if got != expected:
            diff = [r for r in got if r not in expected][:2]
            pytest.fail(
                f"the worker's results differ from the live path's: {diff}\n"
                f"log: {log.read_text(errors='replace')[-2000:]}"
            )
    finally:
        worker.kill(signal.SIGTERM)
        await redis.aclose()
    replayed = await replay_kafka(stack.kafka_bootstrap, topics["events"], exp, config)

    # aftershock report: the run directory's own log, replayed
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_meta(run_dir, _meta(exp))
    (run_dir / ANALYSIS_FILE).write_text(config.model_dump_json())
    (run_dir / EVENTS_FILE).write_text("".join(e.model_dump_json() + "\n" for e in events))
    code = await asyncio.to_thread(_report_cli, procs, run_dir)
    assert code.returncode == 0, code.stderr
    from_report = RunData.model_validate_json((run_dir / "results.json").read_text()).records()

    paths = {"live": live, "worker": worker_results, "replay": replayed, "report": from_report}
    outputs = {
        name: _outputs(tmp_path / f"out-{name}", exp, results) for name, results in paths.items()
    }
    first = outputs["live"]
    for name, out in outputs.items():
        for key in ("results", "dashboard", *RENDERED):
            assert out[key] == first[key], f"{name}: {key} differs from the live path's"

    # Within one run the outputs agree: the dashboard's last line with the summary.
    line = first["dashboard"]
    summary = first["summary.md"]
    episodes = re.search(r"episodes=(\d+) mttr=([\d.]+)s isolation=(\d+)", line)
    assert episodes is not None, line
    n, mttr, violations = episodes.groups()
    assert int(n) >= 1
    assert "| overall | " in summary
    overall = next(ln for ln in summary.splitlines() if ln.startswith("| overall |"))
    assert overall.split("|")[3].strip() == n
    assert overall.split("|")[4].strip() == f"{mttr} s"
    assert f"## Isolation violations: {violations}" in summary
    assert int(violations) == LEAKS
    groups = [r for r in first["results"] if r["kind"] == "result.isolation_group"]
    assert [g["count"] for g in groups] == [LEAKS]
    examples = [r for r in first["results"] if r["kind"] == "result.isolation_violation"]
    assert len(examples) == config.violation_examples < LEAKS
    assert f"{LEAKS} messages reached a session" in first["report.html"]
    assert "open_episodes=0" in line
    assert "## Verdict: PASS" in summary
    assert "Verdict: PASS" in first["report.html"]
    assert _junit_counts(first["junit.xml"]) == (0, 0)


def _report_cli(procs: Processes, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "report", str(run_dir)],
        text=True, timeout=120,
    )  # fmt: skip


def _junit_counts(text: str) -> tuple[int, int]:
    root = ET.fromstring(text)
    return int(root.get("failures", "0")), int(root.get("errors", "0"))


def _interrupted(exp: str) -> list[Event]:
    cut = T0 + 7500 * MS
    evs = [e for e in scenario(ended=False) if e.ts_ns < cut]
    ids = {"experiment_id": "x", "run_id": "run-1", "generator_id": "injector"}
    evs.append(ExperimentAborted(**ids, ts_ns=cut, reason="interrupted (SIGINT)", cause="signal"))
    evs.append(ExperimentEnded(**ids, ts_ns=cut + 10 * MS, status="aborted"))
    return _events(exp, evs)


CASES: dict[str, tuple[Any, AnalyzerConfig, str, str, int, str, list[str]]] = {
    # name: (events, config, status, note, exit code, verdict, reasons)
    "passing": (
        lambda exp: _events(exp),
        CONFIG.model_copy(update={"slos": [SloSpec(), SloSpec(target="redis", p99_max_ms=50)]}),
        "completed", "", 0, "PASS", [],
    ),
    "failing-slo": (
        lambda exp: _events(exp),
        CONFIG.model_copy(update={"slos": [SloSpec(target="gateway", availability_min_pct=99)]}),
        "completed", "", 1, "FAIL", ["gateway:availability"],
    ),
    "deviated-after": (
        lambda exp: _events(exp, scenario(deviated=True)),
        CONFIG,
        "failed", "the steady-state hypothesis deviated", 1, "FAIL",
        ["steady-state probe gateway-up (after the method, at 9.7 s) deviated: status 503 not in "
         "[200]", "run failed: the steady-state hypothesis deviated"],
    ),
    "no-data-fails": (
        lambda exp: _events(exp),
        CONFIG.model_copy(update={"slos": [SloSpec(target="redis", p99_max_ms=50,
                                                   no_data_fails=True)]}),
        "completed", "", 1, "FAIL", ["redis:p99_latency: no data"],
    ),
    "interrupted": (
        _interrupted,
        CONFIG,
        "interrupted", "interrupted (SIGINT)", 2, "INTERRUPTED",
        ["gateway had not recovered when the run ended", "run interrupted: interrupted (SIGINT)"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_output_says_the_same_verdict(case: str, tmp_path: Path, procs: Processes) -> None:
    make, config, status, note, code, verdict, reasons = CASES[case]
    exp = f"verdict-{case}"
    events = make(exp)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_meta(run_dir, _meta(exp, status, note))
    (run_dir / ANALYSIS_FILE).write_text(config.model_dump_json())
    (run_dir / EVENTS_FILE).write_text("".join(e.model_dump_json() + "\n" for e in events))

    done = _report_cli(procs, run_dir)
    assert done.returncode == code, done.stderr
    assert f"verdict {verdict}" in done.stderr

    data = RunData.model_validate_json((run_dir / "results.json").read_text())
    v = next(r for r in json.loads((run_dir / "results.json").read_text())["results"]
             if r["kind"] == "result.verdict" and not r["phase"])  # fmt: skip
    assert v["passed"] is (verdict == "PASS")
    summary = (run_dir / "summary.md").read_text()
    report = html.unescape((run_dir / "report.html").read_text())
    assert f"## Verdict: {verdict}\n" in summary
    assert f"<h2>Verdict: {verdict}</h2>" in report
    # each probe run is marked on the latency chart, red when it deviated
    marks = re.findall(r'class="mark" data-ok="(true|false)"', report)
    assert marks == [str(p["met"]).lower() for p in v["hypothesis"]]
    assert len(v["hypothesis"]) == (1 if case == "interrupted" else 2)
    failures, errors = _junit_counts((run_dir / "junit.xml").read_text())
    assert (failures + errors == 0) is (verdict == "PASS")
    assert (errors > 0) is (verdict == "INTERRUPTED")
    for reason in reasons:
        assert any(reason in r for r in v["reasons"]), (reason, v["reasons"])
        assert reason in summary
        assert reason in report
        assert reason in done.stderr
    assert len(v["reasons"]) == len(reasons)
    # the same verdict the core gives the log, settled with the run's end
    a = Analyzer(exp, config)
    a.ingest(events)
    a.finish()
    again = RunData.of(_meta(exp, status, note), a.results())
    assert comparable(again.records()) == comparable(data.records())
    # replay, from the log alone (no run.json): the same reasons, how the run ended included,
    # except where the game day knows more (its Ctrl-C; the log says the experiment aborted)
    (alone,) = [r for r in a.results() if r.kind == "result.verdict" and not r.phase]
    assert (alone.reasons == v["reasons"]) is (case != "interrupted"), alone.reasons


def test_an_slo_without_data_is_no_data_never_pass(tmp_path: Path) -> None:
    _, config, *_ = CASES["passing"]
    a = Analyzer("nd", config)
    a.ingest(_events("nd"))
    a.finish()
    data = RunData.of(_meta("nd"), a.results())
    write_reports(tmp_path, data)
    v = next(r for r in data.records() if r.kind == "result.verdict" and not r.phase)
    check = next(c for c in v.checks if c.name == "redis:p99_latency")  # type: ignore[union-attr]
    assert (check.status, check.passed, check.observed) == ("no_data", True, None)
    assert "| redis:p99_latency | no data | – | 50.000 |" in (tmp_path / "summary.md").read_text()
    junit = ET.fromstring((tmp_path / "junit.xml").read_text())
    case = junit.find(".//testcase[@name='redis:p99_latency']")
    assert case is not None
    assert case.find("skipped") is not None


async def test_a_late_fault_event_folds_the_same_live_and_from_the_run_log(
    tmp_path: Path,
) -> None:
    """A busy machine holds a fault's start up for 1.5 s between stamping and emitting it,
    so it arrives behind the watermark. The live analysis (folding every few events) and a
    replay or report of the run's local log (folding thousands at a time) see it at the same
    place in the same order and must give the same records: here they used to attribute
    sends and receives to the fault differently."""
    events = held_up(ordering_scenario(), "fault.toxic_added", 1_500)
    config = AnalyzerConfig()
    log = RunLogWriter(tmp_path / EVENTS_DIR)
    analysis = LiveAnalysis(EXP, config)
    fanout = Fanout(log, analysis)  # as `aftershock run` wires them
    for i in range(0, len(events), 40):
        for ev in events[i : i + 40]:
            fanout.emit(ev)
        await analysis.step()
    live = await analysis.drain(10.0)
    log.close()
    from_log = analyze_batches(EXP, read_run(tmp_path, EXP), config)
    assert [r.model_dump() for r in live] == [r.model_dump() for r in from_log]
    assert analysis.analyzer.stats().late > 0  # the case this test is about
