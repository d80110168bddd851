"""``aftershock run`` end to end, as a user runs it: a real process against the sample chat
system (started by the run on free ports), the fault proxy and the shared embedded stack."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import psutil
import pytest

from aftershock.gameday.run import FORCED_CLEANUP_S
from injector.control import RunState, state_key

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack
    from tests.processes import Processes

pytestmark = pytest.mark.timeout(180)

SHORT = Path(__file__).parent / "short-gameday.yaml"


def _env(stack: EmbeddedStack, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AFTERSHOCK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "AFTERSHOCK_REDIS_URL": stack.redis_url,
        "AFTERSHOCK_STATE_DIR": str(tmp_path / "state"),
    }


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aftershock.cli.main", *args]


def _run_checks(doc: dict[str, Any]) -> list[tuple[str, bool]]:
    (v,) = [r for r in doc["results"] if r["kind"] == "result.verdict" and not r["phase"]]
    return [(c["name"], c["passed"]) for c in v["checks"]]


def test_isolation_bug_fails_the_run_naming_the_slo(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    runs = tmp_path / "runs"
    proc = procs.run(
        _cli(
            "run", str(SHORT), "--bug", "isolation", "--runs-dir", str(runs), "--line-every-s", "5"
        ),
        env=_env(stack, tmp_path),
        text=True,
        timeout=150,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "failing SLOs: gateway:isolation_violations" in proc.stderr
    assert "verdict FAIL (completed)" in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "] phase=" in ln]  # pipe-mode dashboard
    assert len(lines) >= 2, proc.stderr[-3000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    for name in (
        "report.html",
        "results.json",
        "summary.md",
        "junit.xml",
        "journal.json",
        "spans.jsonl",
        "run.json",
        "analysis.json",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    assert list((run_dir / "events").glob("*.seg"))  # the local log: zstd batches
    assert not (run_dir / "events.jsonl").exists()
    export = procs.run(
        _cli("export", "--run", str(run_dir), "-o", str(tmp_path / "events.jsonl")),
        env=_env(stack, tmp_path), text=True, timeout=120,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    exported = (tmp_path / "events.jsonl").read_text().splitlines()
    ids = [json.loads(line)["event_id"] for line in exported]
    assert len(ids) == len(set(ids)) > 1000
    journal = json.loads((run_dir / "journal.json").read_text())
    assert {f["fault_id"]: f["state"] for f in journal["aftershock"]["faults"]} == {
        "redis-outage": "reverted",
        "reconnect-storm": "reverted",
    }
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed == ["gateway:isolation_violations"]
    # the dashboard's last line is the final results' live record, as the summary says
    results = json.loads((run_dir / "results.json").read_text())["results"]
    (live,) = [r for r in results if r["kind"] == "result.live"]
    groups = [r for r in results if r["kind"] == "result.isolation_group"]
    violations = sum(g["count"] for g in groups)
    assert live["isolation_violations"] == violations > 0
    # every group keeps at most its first few violations as records
    examples = [r for r in results if r["kind"] == "result.isolation_violation"]
    assert len(examples) == sum(g["examples_kept"] for g in groups)
    assert all(g["examples_kept"] == min(g["count"], 5) for g in groups)
    assert lines[-1].endswith(f"isolation={violations}"), lines[-1]
    assert f"episodes={live['episodes']} " in lines[-1]
    assert f"## Isolation violations: {violations}" in (run_dir / "summary.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert "Verdict: FAIL" in html
    assert 'data-fault="redis-outage"' in html
    assert 'data-fault="reconnect-storm"' in html
    # violations grouped by origin and victim tenant
    assert "<td>acme</td><td>globex</td>" in html or "<td>globex</td><td>acme</td>" in html

    # the same report, regenerated from the run's event log
    live = json.loads((run_dir / "results.json").read_text())
    regen = procs.run(
        _cli("report", str(run_dir), "--baseline", str(run_dir)),
        env=_env(stack, tmp_path),
        text=True,
        timeout=120,
    )
    assert regen.returncode == 1, regen.stderr
    assert "verdict FAIL" in regen.stderr
    assert f"  - gateway:isolation_violations {violations} exceeds 0" in regen.stderr
    assert f"Compared with baseline run {run_dir.name}" in (run_dir / "summary.md").read_text()
    again = json.loads((run_dir / "results.json").read_text())
    assert _run_checks(again) == _run_checks(live)
    # every record, the time series, the dashboard's figures and the verdict: exactly
    assert again["results"] == live["results"]
    # and `aftershock replay` of the run's log prints the same records, in the same order
    replay = procs.run(
        _cli("replay", "short-gameday", "--json", "--run", str(run_dir),
             "--config", str(run_dir / "analysis.json")),
        env=_env(stack, tmp_path), text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert [json.loads(line) for line in replay.stdout.splitlines()] == live["results"]

    # a failed session's trace, with the fault active when it failed
    traces = procs.run(
        _cli("traces", str(run_dir), "--failed"),
        env=_env(stack, tmp_path),
        text=True,
        timeout=60,
    )
    assert traces.returncode == 0, traces.stderr
    assert "FAILED" in traces.stdout.splitlines()[0]
    assert "faults: redis-outage" in traces.stdout


DEFAULT_INTERRUPT_TIMEOUT_S = 60.0
"""``aftershock run --interrupt-timeout-s`` by default (docs/gameday.md)."""
REVERT_TIMEOUT_S = 5.0
"""short-gameday.yaml's ``revert_timeout``."""


def _bound_s(interrupt_timeout_s: float | None) -> float:
    """docs/gameday.md: a run ends at most ``--interrupt-timeout-s`` + ``revert_timeout`` +
    FORCED_CLEANUP_S after the first Ctrl-C, and ``revert_timeout`` + FORCED_CLEANUP_S after
    the second (``interrupt_timeout_s`` None)."""
    return (interrupt_timeout_s or 0.0) + REVERT_TIMEOUT_S + FORCED_CLEANUP_S


def _start_run(
    procs: Processes, stack: EmbeddedStack, tmp_path: Path, *extra: str
) -> tuple[subprocess.Popen[str], Path]:
    """``aftershock run`` in its own process group (as a terminal runs it), once the Redis
    outage is in force."""
    runs = tmp_path / "runs"
    proc = procs.popen(
        _cli("run", str(SHORT), "--runs-dir", str(runs), "--line-every-s", "1", *extra),
        env=_env(stack, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The Redis outage runs 4 s to 8 s into the timeline; the injector's run state says where
    # the timeline is (the dashboard may lag, and with --workers it waits for them to start).
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        raw = _redis_get(stack, state_key("short-gameday"))
        if raw and RunState.model_validate_json(raw).offset_s >= 5.0:
            return proc, runs
        time.sleep(0.2)
    pytest.fail(f"the Redis outage never came into force (exit {proc.poll()})")


def _read_until(proc: subprocess.Popen[str], needle: str) -> None:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return
    pytest.fail(f"the run ended before printing {needle!r}: {''.join(seen)[-3000:]}")


def _ctrl_c(proc: subprocess.Popen[str]) -> float:
    """SIGINT to the run's process group, as Ctrl-C at a terminal; returns when."""
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    return t


def _wait_within(proc: subprocess.Popen[str], since: float, bound_s: float) -> str:
    """The rest of stderr; fails unless the run exited ``bound_s`` after ``since``."""
    try:
        _, err = proc.communicate(timeout=max(1.0, since + bound_s + 10 - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the interrupted run had not ended {bound_s + 10:g} s later")
    took = time.monotonic() - since
    assert took <= bound_s, f"ended {took:.1f} s after Ctrl-C, bound {bound_s:g} s: {err[-3000:]}"
    return err


def _check_partial_run(runs: Path, err: str) -> dict[str, Any]:
    """Every fault reverted (or never injected), the partial report written; returns run.json."""
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    journal = json.loads((run_dir / "journal.json").read_text())
    states = {f["fault_id"]: f["state"] for f in journal["aftershock"]["faults"]}
    assert states["redis-outage"] == "reverted", err[-3000:]
    assert set(states.values()) <= {"reverted", "skipped"}, states
    meta: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert "run interrupted" in (run_dir / "report.html").read_text()
    assert "## Verdict: INTERRUPTED" in (run_dir / "summary.md").read_text()
    assert "verdict INTERRUPTED (interrupted)" in err
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.find("testsuite/testcase[@name='run']/error") is not None
    assert json.loads((run_dir / "results.json").read_text())["meta"]["status"] == "interrupted"
    return meta


@pytest.mark.parametrize("workers", [1, 0], ids=["workers", "in-process"])
def test_ctrl_c_on_a_busy_machine_reverts_faults_and_ends_within_the_bound(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes, workers: int
) -> None:
    """Analysis by an analyzer worker process (Faust), and in process; two more CPU-bound
    processes keep the machine busy meanwhile."""
    procs.busy_cpus(2, max_s=170)
    proc, runs = _start_run(procs, stack, tmp_path, "--workers", str(workers))
    since = _ctrl_c(proc)
    err = _wait_within(proc, since, _bound_s(DEFAULT_INTERRUPT_TIMEOUT_S))
    assert proc.returncode == 2, err[-3000:]
    assert "interrupted (SIGINT): aborting, reverting faults" in err
    meta = _check_partial_run(runs, err)
    run_dir = runs / meta["run_id"]
    if workers:
        assert (run_dir / "analyzer-0.log").exists()
    if "had not caught up" not in meta["note"]:  # the run waited for the analysis to judge it
        assert _run_checks(json.loads((run_dir / "results.json").read_text()))


def _analyzer_worker(run_pid: int) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(run_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "analyze" in child.cmdline():
                    return child
        time.sleep(0.1)
    pytest.fail("no analyzer worker process")


@pytest.mark.parametrize("second_ctrl_c", [True, False], ids=["second-ctrl-c", "timeout"])
def test_a_run_that_cannot_drain_stops_waiting(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes, second_ctrl_c: bool
) -> None:
    """The analyzer worker is frozen (SIGSTOP), so it can never judge the run: a second
    Ctrl-C, or ``--interrupt-timeout-s`` passing, ends the run anyway."""
    interrupt_timeout_s = DEFAULT_INTERRUPT_TIMEOUT_S if second_ctrl_c else 5.0
    proc, runs = _start_run(
        procs,
        stack,
        tmp_path,
        "--workers",
        "1",
        "--interrupt-timeout-s",
        f"{interrupt_timeout_s:g}",
    )
    worker = _analyzer_worker(proc.pid)
    worker.suspend()
    try:
        since = _ctrl_c(proc)
        if second_ctrl_c:
            _read_until(proc, "aborting, reverting faults")
            since = _ctrl_c(proc)
        err = _wait_within(proc, since, _bound_s(None if second_ctrl_c else interrupt_timeout_s))
        assert proc.returncode == 2, err[-3000:]
        assert "no longer waiting" in err
        meta = _check_partial_run(runs, err)
        assert "the run stopped waiting for its analysis" in meta["note"]
        assert not worker.is_running()  # killed and reaped by the run
    finally:
        with contextlib.suppress(psutil.Error):
            worker.kill()


def test_ctrl_c_while_setting_up_stops_the_set_up(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    """Ctrl-C once the analyzer worker is started, while the sample system still starts: the
    run stops setting up instead of going on into the experiment."""
    runs = tmp_path / "runs"
    proc = procs.popen(
        _cli("run", str(SHORT), "--runs-dir", str(runs), "--workers", "1"),
        env=_env(stack, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/analyzer-0.log")):
        assert proc.poll() is None, "the run ended before starting its worker"
        assert time.monotonic() < deadline, "no analyzer worker started"
        time.sleep(0.02)
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    since = _ctrl_c(proc)
    err = _wait_within(proc, since, _bound_s(DEFAULT_INTERRUPT_TIMEOUT_S))
    assert proc.returncode == 2, err[-3000:]
    if "before the experiment started" in err:  # the usual case: the sample takes seconds
        assert not (run_dir / "journal.json").exists()  # nothing was injected
    else:  # a machine fast enough to be done setting up: an interrupted experiment
        _check_partial_run(runs, err)
    assert _children_of_run(str(runs)) == []
    app_id = f"aftershock-run-{run_dir.name}"  # the worker's command line names it
    workers = [
        p for p in psutil.process_iter(["cmdline"]) if app_id in " ".join(p.info["cmdline"] or [])
    ]
    assert workers == []


def test_a_hypothesis_deviating_after_the_method_fails_every_output(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    """The SLOs may pass; the steady-state probe that deviates after the method fails the run
    in the exit code, the console, summary.md, report.html, results.json and junit.xml."""
    import yaml

    marker = tmp_path / "method-ran"
    doc = yaml.safe_load(SHORT.read_text())
    probe = {"type": "python", "module": "tests.injector.probes", "func": "absent",
             "arguments": {"path": str(marker)}}  # fmt: skip
    doc["steady-state-hypothesis"]["probes"] = [
        {"type": "probe", "name": "marker-absent", "tolerance": True, "provider": probe}
    ]
    doc["method"] = [
        {"type": "action", "name": "leave-marker",
         "provider": {"type": "python", "module": "tests.injector.probes", "func": "touch",
                      "arguments": {"path": str(marker)}}}
    ]  # fmt: skip
    exp = tmp_path / "deviates.yaml"
    exp.write_text(yaml.safe_dump(doc))
    runs = tmp_path / "runs"
    proc = procs.run(
        _cli("run", str(exp), "--runs-dir", str(runs), "--line-every-s", "5"),
        env=_env(stack, tmp_path), text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "verdict FAIL (failed)" in proc.stderr
    reason = "steady-state probe marker-absent (after the method"
    assert reason in proc.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())["results"]
    (v,) = [r for r in results if r["kind"] == "result.verdict" and not r["phase"]]
    assert v["passed"] is False
    assert [(p["when"], p["met"]) for p in v["hypothesis"]] == [("before", True), ("after", False)]
    assert any(r.startswith(reason) for r in v["reasons"])
    assert "## Verdict: FAIL" in (run_dir / "summary.md").read_text()
    assert reason in (run_dir / "summary.md").read_text()
    assert "<h2>Verdict: FAIL</h2>" in (run_dir / "report.html").read_text()
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert int(root.get("failures", "0")) >= 1
    hyp = root.find("testsuite[@name='hypothesis.short-gameday']")
    assert hyp is not None
    cases = hyp.findall("testcase")
    assert [c.find("failure") is not None for c in cases] == [False, True]
    # each case took its probe's real duration
    assert [c.get("time") for c in cases] == [f"{p['duration_s']:.3f}" for p in v["hypothesis"]]


def _redis_get(stack: EmbeddedStack, key: str) -> bytes | None:
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    try:
        value = client.get(key)
    finally:
        client.close()
    return value if isinstance(value, bytes) else None


def _children_of_run(marker: str) -> list[int]:
    """Pids of processes whose command line mentions ``marker`` (the run's directory)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd and b"examples.chat" in cmd:
                found.append(int(d.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_sigkill_of_the_run_takes_its_sample_system_along(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    runs = tmp_path / "runs"
    proc = procs.popen(
        _cli("run", str(SHORT), "--runs-dir", str(runs), "--line-every-s", "1"),
        env=_env(stack, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _read_until(proc, "phase=")  # the sample system is up once the load runs
    assert _children_of_run(str(runs))
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _children_of_run(str(runs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    logs = "".join(p.read_text()[-3000:] for p in runs.glob("*/sut.log"))
    assert _children_of_run(str(runs)) == [], logs  # what the sample system said, if it lingers
