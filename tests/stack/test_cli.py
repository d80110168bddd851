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

from spine import stackstate

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes

CLI = [sys.executable, "-m", "aftershock.cli.main"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
    env["AFTERSHOCK_STATE_DIR"] = str(tmp_path / "state")
    return env


def _run(procs: Processes, tmp_path: Path, *args: str) -> str:
    out = procs.run([*CLI, *args], env=_env(tmp_path), text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return str(out.stdout)


def _servers(tmp_path: Path) -> list[stackstate.ProcessRecord]:
    return [
        p for _, rec in stackstate.read_records(tmp_path / "state") if rec for p in rec.processes
    ]


def _gone(servers: list[stackstate.ProcessRecord]) -> bool:
    # By pid and start time: on a busy machine a pid can belong to another process already.
    return not any(stackstate.is_alive(p.pid, p.create_time) for p in servers)


def test_detached_up_status_down(tmp_path: Path, procs: Processes) -> None:
    out = _run(procs, tmp_path, "stack", "up", "--detach")
    assert re.search(r"kafka\s+127\.0\.0\.1:\d+", out)
    assert re.search(r"redis\s+redis://127\.0\.0\.1:\d+/0", out)
    servers = _servers(tmp_path)
    assert len(servers) == 2
    status = _run(procs, tmp_path, "stack", "status")
    assert "detached" in status
    assert status.count(" running") == 2
    down = _run(procs, tmp_path, "stack", "down")
    assert down.count("stopped") == 2
    assert _gone(servers)
    assert "no stack recorded" in _run(procs, tmp_path, "stack", "status")


def _record_procs(tmp_path: Path) -> dict[str, stackstate.ProcessRecord]:
    return {p.name: p for p in _servers(tmp_path)}


def _alive(p: stackstate.ProcessRecord) -> bool:
    return stackstate.is_alive(p.pid, p.create_time)


def _wait(predicate: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_up_detached_again_restarts_only_a_dead_broker_and_restart_broker(
    tmp_path: Path, procs: Processes
) -> None:
    first = _run(procs, tmp_path, "stack", "up", "-d")
    started = _record_procs(tmp_path)
    try:
        again = _run(procs, tmp_path, "stack", "up", "-d")  # everything up: nothing to do
        assert "already running" in again
        assert _record_procs(tmp_path) == started

        os.kill(started["kafka"].pid, signal.SIGKILL)
        _wait(lambda: not _alive(started["kafka"]))
        out = _run(procs, tmp_path, "stack", "up", "-d")  # Valkey still runs: only the broker
        assert "restarted kafka" in out
        now = _record_procs(tmp_path)
        assert now["redis"] == started["redis"]
        assert now["kafka"].pid != started["kafka"].pid
        assert now["kafka"].port == started["kafka"].port
        kafka_line = [line for line in first.splitlines() if line.startswith("kafka")]
        assert kafka_line[0] in out  # the same address as before

        out = _run(procs, tmp_path, "stack", "restart", "broker")
        assert "restarted kafka" in out
        after = _record_procs(tmp_path)
        assert not _alive(now["kafka"])
        assert _alive(after["kafka"])
        assert after["redis"] == started["redis"]
        assert after["kafka"].argv != now["kafka"].argv  # a new cluster id
        # the topics exist on the new broker
        _run(procs, tmp_path, "stack", "drop-topics")
    finally:
        _run(procs, tmp_path, "stack", "down")
    assert _gone([*_record_procs(tmp_path).values(), started["kafka"]])


def test_restart_without_a_detached_stack_is_a_clear_error(
    tmp_path: Path, procs: Processes
) -> None:
    out = procs.run([*CLI, "stack", "restart", "broker"], env=_env(tmp_path), text=True, timeout=60)
    assert out.returncode == 1
    assert "no detached stack" in out.stderr
    bad = procs.run([*CLI, "stack", "restart", "kafka"], env=_env(tmp_path), text=True, timeout=60)
    assert bad.returncode == 2
    assert "unknown service 'kafka'" in bad.stderr


def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path, procs: Processes) -> None:
    proc = procs.popen([*CLI, "stack", "up"], env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while "press Ctrl-C" not in "".join(lines):  # however long a busy machine takes
        line = proc.stdout.readline()
        assert line, f"aftershock stack up exited early: {''.join(lines)}"
        lines.append(line)
    servers = _servers(tmp_path)
    assert len(servers) == 2
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal: to its process group
    assert proc.wait(timeout=120) == 0
    assert _gone(servers)
    assert _servers(tmp_path) == []


def test_demo_reads_back_everything_it_published(tmp_path: Path, procs: Processes) -> None:
    out = procs.run(
        [*CLI, "demo", "--event-log-only", "--users-per-tenant", "2", "--messages", "30"],
        env=_env(tmp_path),
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "none lost, none duplicated" in out.stdout
    assert "session.send" in out.stdout
    assert _servers(tmp_path) == []


def test_down_stops_the_producers_first_and_they_flush(tmp_path: Path, procs: Processes) -> None:
    out = _run(procs, tmp_path, "stack", "up", "-d")
    bootstrap = re.search(r"kafka\s+(\S+)", out)
    assert bootstrap is not None
    producer = procs.popen(
        [
            sys.executable, "-m", "bench.producer", "--bootstrap", bootstrap.group(1),
            "--state-dir", str(tmp_path / "state"), "--progress", str(tmp_path / "progress"),
            "--prefix", "00000000000000aa", "--rate", "2000",
        ],
        env=_env(tmp_path), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert producer.stdout is not None
    assert producer.stdout.readline().strip() == "ready"
    _wait(lambda: (tmp_path / "progress").exists() and (tmp_path / "progress").stat().st_size)
    servers = _servers(tmp_path)
    down = _run(procs, tmp_path, "stack", "down")
    assert f"stopped producer pid {producer.pid}" in down
    out, _ = producer.communicate(timeout=120)
    assert producer.returncode == 0
    stats = json.loads(out.strip().splitlines()[-1])
    # It flushed before the broker stopped: everything acknowledged, nothing left on disk.
    assert stats["sent"] >= stats["emitted"] > 0
    assert stats["in_spool"] == 0
    assert _gone(servers)
