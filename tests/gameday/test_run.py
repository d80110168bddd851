"""``aftershock run`` end to end, as a user runs it: a real process against the sample chat
system (started by the run on free ports), the fault proxy and the shared embedded stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import pytest

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack

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


def test_isolation_bug_fails_the_run_naming_the_slo(stack: EmbeddedStack, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    proc = subprocess.run(
        _cli(
            "run", str(SHORT), "--bug", "isolation", "--runs-dir", str(runs), "--line-every-s", "5"
        ),
        env=_env(stack, tmp_path),
        capture_output=True,
        text=True,
        timeout=150,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "failing SLOs: gateway:isolation_violations" in proc.stderr
    assert "phase=fault:redis-outage" in proc.stderr  # pipe-mode dashboard lines
    assert wall < 90
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
    export = subprocess.run(
        _cli("export", "--run", str(run_dir), "-o", str(tmp_path / "events.jsonl")),
        env=_env(stack, tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    ids = [json.loads(line)["event_id"] for line in lines]
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
    html = (run_dir / "report.html").read_text()
    assert "Verdict: FAIL" in html
    assert 'data-fault="redis-outage"' in html
    assert 'data-fault="reconnect-storm"' in html
    assert "acme → globex" in html or "globex → acme" in html

    # the same report, regenerated from the run's event log
    live = json.loads((run_dir / "results.json").read_text())
    regen = subprocess.run(
        _cli("report", str(run_dir), "--baseline", str(run_dir)),
        env=_env(stack, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert regen.returncode == 1, regen.stderr
    assert "verdict FAIL: gateway:isolation_violations" in regen.stderr
    assert f"Compared with baseline run {run_dir.name}" in (run_dir / "summary.md").read_text()
    again = json.loads((run_dir / "results.json").read_text())
    assert _run_checks(again) == _run_checks(live)

    # a failed session's trace, with the fault active when it failed
    traces = subprocess.run(
        _cli("traces", str(run_dir), "--failed"),
        env=_env(stack, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert traces.returncode == 0, traces.stderr
    assert "FAILED" in traces.stdout.splitlines()[0]
    assert "faults: redis-outage" in traces.stdout


def test_ctrl_c_reverts_faults_and_writes_a_partial_report(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """Also the analysis by an analyzer worker process (Faust) instead of in process."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        _cli("run", str(SHORT), "--runs-dir", str(runs), "--line-every-s", "1", "--workers", "1"),
        env=_env(stack, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the Redis outage is in force
            if "faults=redis-outage" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # never leave a run behind, even when the test fails
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 2, err[-3000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    journal = json.loads((run_dir / "journal.json").read_text())
    states = {f["fault_id"]: f["state"] for f in journal["aftershock"]["faults"]}
    assert states["redis-outage"] == "reverted"
    assert states["reconnect-storm"] != "active"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert "run interrupted" in (run_dir / "report.html").read_text()
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.find("testsuite/testcase[@name='run']/error") is not None
    # the worker judged the partial run, and the run waited for it
    assert (run_dir / "analyzer-0.log").exists()
    assert "had not caught up" not in meta["note"]
    assert _run_checks(json.loads((run_dir / "results.json").read_text()))


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
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        _cli("run", str(SHORT), "--runs-dir", str(runs), "--line-every-s", "1"),
        env=_env(stack, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the sample system is up once the load runs
            if "phase=" in line:
                break
        assert _children_of_run(str(runs))
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _children_of_run(str(runs)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children_of_run(str(runs)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
