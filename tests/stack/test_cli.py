"""The ``aftershock`` command as a user runs it: stack up/down/status and the demo."""

from __future__ import annotations

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
