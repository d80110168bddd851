"""Pid records of the embedded stack's server processes, and stopping them.

Every stack writes ``<state_dir>/stack/<owner pid>.json`` as soon as it spawns a process, so a
run that crashed leaves a record behind: the next start (or ``aftershock stack down``) finds
records whose owner is gone and kills their processes. A process is identified by pid *and*
creation time, so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

STOP_TIMEOUT_S = 5.0


class ProcessRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    pid: int
    create_time: float
    port: int
    argv: list[str]
    log_path: str
    stop_signal: str = "SIGTERM"
    """How it asks the process to exit; SIGKILL follows after a timeout."""


class StackRecord(BaseModel):
    """What one stack started: written by its owner, read by ``stack status|down`` and stale
    cleanup."""

    model_config = ConfigDict(frozen=True)

    owner_pid: int
    owner_create_time: float
    detached: bool = False
    started_at_s: float
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    processes: list[ProcessRecord] = []


def records_dir(state_dir: Path) -> Path:
    return state_dir / "stack"


def record_path(state_dir: Path, owner_pid: int) -> Path:
    return records_dir(state_dir) / f"{owner_pid}.json"


def write_record(state_dir: Path, record: StackRecord) -> Path:
    """Write atomically, so a reader never sees half a record."""
    path = record_path(state_dir, record.owner_pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_records(state_dir: Path) -> Iterator[tuple[Path, StackRecord | None]]:
    """Every record file with its parsed record (None when the file is unreadable)."""
    folder = records_dir(state_dir)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            yield path, StackRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            yield path, None


def process_create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` is running and is the very process that was recorded."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def owner_alive(record: StackRecord) -> bool:
    return is_alive(record.owner_pid, record.owner_create_time)


def is_stale(record: StackRecord) -> bool:
    """A record is stale when nobody owns it any more: its foreground owner died, or it is a
    detached stack whose processes are all gone."""
    if record.detached:
        return not any(is_alive(p.pid, p.create_time) for p in record.processes)
    return not owner_alive(record)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


async def stop_process(proc: ProcessRecord, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """The process's stop signal, wait up to ``timeout_s``, then SIGKILL. Returns True if it had
    to kill."""
    if not is_alive(proc.pid, proc.create_time):
        return False
    _signal(proc.pid, signal.Signals[proc.stop_signal])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not is_alive(proc.pid, proc.create_time):
            return False
        await asyncio.sleep(0.02)
    _signal(proc.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(proc.pid)
        if not is_alive(proc.pid, proc.create_time):
            break
        await asyncio.sleep(0.02)
    return True


def spawn(argv: list[str], log_path: Path) -> int:
    """Start ``argv`` in a session of its own with output to ``log_path``; returns its pid.

    Its own session: Ctrl-C in the terminal reaches only us, and we stop the servers in order;
    a detached stack also survives its terminal. No ``Popen`` object, so a stack left running
    on purpose is not reported as a leaked child.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions, setsid=True)


def exit_status(pid: int) -> int | None:
    """The exit status of our child ``pid`` if it has exited (and reaps it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if psutil.pid_exists(pid) else -1
    return os.waitstatus_to_exitcode(status) if done else None


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


async def stop_record(state_dir: Path, path: Path, record: StackRecord) -> list[str]:
    """Stop every process of ``record`` and remove its file; returns what was stopped."""
    stopped = []
    for proc in reversed(record.processes):
        if is_alive(proc.pid, proc.create_time):
            await stop_process(proc)
            stopped.append(f"{proc.name} (pid {proc.pid})")
    remove(path)
    return stopped


async def clean_stale(state_dir: Path) -> list[str]:
    """Kill the processes of every stale record in ``state_dir``; returns what was stopped."""
    stopped: list[str] = []
    for path, record in read_records(state_dir):
        if record is None:
            remove(path)
        elif is_stale(record):
            stopped += await stop_record(state_dir, path, record)
    return stopped
