"""The ``aftershock`` command as a user runs it: stack up/down/status and the demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psutil

from spine import stackstate

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "aftershock.cli.main"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
    env["AFTERSHOCK_STATE_DIR"] = str(tmp_path / "state")
    return env


def _run(tmp_path: Path, *args: str) -> str:
    out = subprocess.run(
        [*CLI, *args], env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout


def _server_pids(tmp_path: Path) -> list[int]:
    return [
        p.pid
        for _, rec in stackstate.read_records(tmp_path / "state")
        if rec
        for p in rec.processes
    ]


def _alive(pid: int) -> bool:
    # One lookup: "exists, then read its status" raced with init reaping the process between
    # the two (NoSuchProcess from the second).
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: list[int]) -> bool:
    return not any(_alive(p) for p in pids)


def test_detached_up_status_down(tmp_path: Path) -> None:
    out = _run(tmp_path, "stack", "up", "--detach")
    assert re.search(r"kafka\s+127\.0\.0\.1:\d+", out)
    assert re.search(r"redis\s+redis://127\.0\.0\.1:\d+/0", out)
    pids = _server_pids(tmp_path)
    assert len(pids) == 2
    status = _run(tmp_path, "stack", "status")
    assert "detached" in status
    assert status.count(" running") == 2
    down = _run(tmp_path, "stack", "down")
    assert down.count("stopped") == 2
    assert _gone(pids)
    assert "no stack recorded" in _run(tmp_path, "stack", "status")


def _record_procs(tmp_path: Path) -> dict[str, stackstate.ProcessRecord]:
    return {
        p.name: p
        for _, rec in stackstate.read_records(tmp_path / "state")
        if rec
        for p in rec.processes
    }


def _wait(predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_up_detached_again_restarts_only_a_dead_broker_and_restart_broker(tmp_path: Path) -> None:
    first = _run(tmp_path, "stack", "up", "-d")
    procs = _record_procs(tmp_path)
    try:
        again = _run(tmp_path, "stack", "up", "-d")  # everything up: nothing to do
        assert "already running" in again
        assert _record_procs(tmp_path) == procs

        os.kill(procs["kafka"].pid, signal.SIGKILL)
        _wait(lambda: not _alive(procs["kafka"].pid))
        out = _run(tmp_path, "stack", "up", "-d")  # Valkey still runs: only the broker starts
        assert "restarted kafka" in out
        now = _record_procs(tmp_path)
        assert now["redis"] == procs["redis"]
        assert now["kafka"].pid != procs["kafka"].pid
        assert now["kafka"].port == procs["kafka"].port
        kafka_line = [line for line in first.splitlines() if line.startswith("kafka")]
        assert kafka_line[0] in out  # the same address as before

        out = _run(tmp_path, "stack", "restart", "broker")
        assert "restarted kafka" in out
        after = _record_procs(tmp_path)
        assert not _alive(now["kafka"].pid)
        assert _alive(after["kafka"].pid)
        assert after["redis"] == procs["redis"]
        assert after["kafka"].argv != now["kafka"].argv  # a new cluster id
        topics = subprocess.run(
            [*CLI, "stack", "drop-topics"], env=_env(tmp_path), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert topics.returncode == 0, topics.stderr  # the topics exist on the new broker
    finally:
        _run(tmp_path, "stack", "down")
    assert _gone([p.pid for p in _record_procs(tmp_path).values()] + [procs["kafka"].pid])


def test_restart_without_a_detached_stack_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "stack", "restart", "broker"], env=_env(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "no detached stack" in out.stderr
    bad = subprocess.run(
        [*CLI, "stack", "restart", "kafka"], env=_env(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "unknown service 'kafka'" in bad.stderr


def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "stack", "up"], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while "press Ctrl-C" not in "".join(lines) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"aftershock stack up exited early: {''.join(lines)}"
            lines.append(line)
        pids = _server_pids(tmp_path)
        assert len(pids) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert _gone(pids)
    assert _server_pids(tmp_path) == []


def test_demo_reads_back_everything_it_published(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "demo", "--event-log-only", "--users-per-tenant", "2", "--messages", "30"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "none lost, none duplicated" in out.stdout
    assert "session.send" in out.stdout
    assert _server_pids(tmp_path) == []


def test_down_stops_the_producers_first_and_they_flush(tmp_path: Path) -> None:
    out = _run(tmp_path, "stack", "up", "-d")
    bootstrap = re.search(r"kafka\s+(\S+)", out)
    assert bootstrap is not None
    producer = subprocess.Popen(
        [
            sys.executable, "-m", "bench.producer", "--bootstrap", bootstrap.group(1),
            "--state-dir", str(tmp_path / "state"), "--progress", str(tmp_path / "progress"),
            "--prefix", "00000000000000aa", "--rate", "2000",
        ],
        env=_env(tmp_path), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == "ready"
        _wait(lambda: (tmp_path / "progress").exists() and (tmp_path / "progress").stat().st_size)
        pids = _server_pids(tmp_path)
        down = _run(tmp_path, "stack", "down")
        assert f"stopped producer pid {producer.pid}" in down
        out, _ = producer.communicate(timeout=60)
        assert producer.returncode == 0
        stats = json.loads(out.strip().splitlines()[-1])
        # It flushed before the broker stopped: everything acknowledged, nothing left on disk.
        assert stats["sent"] >= stats["emitted"] > 0
        assert stats["in_spool"] == 0
        assert _gone(pids)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()
