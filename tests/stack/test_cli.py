"""The ``aftershock`` command as a user runs it: stack up/down/status and the demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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
