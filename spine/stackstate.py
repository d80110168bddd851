"""Pid records of the embedded stack's server processes, and stopping them.

Every stack writes ``<state_dir>/stack/<owner pid>.json`` as soon as it spawns a process, so a
run that crashed leaves a record behind: the next start (or ``aftershock stack down``) finds
records whose owner is gone and kills their processes. A process is identified by pid *and*
creation time, so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
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


# Runs in the child before the server: asks the kernel to send it ``sig`` when its parent dies
# (PR_SET_PDEATHSIG survives exec), gives up if the parent is already gone, then becomes the
# server (same pid). ``-I -S``: no site packages, so it starts in a few milliseconds.
_GUARD = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None).prctl(1,int(sys.argv[2]),0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(0);"
    "os.execv(sys.argv[3],sys.argv[3:])"
)


def spawn(argv: list[str], log_path: Path, *, die_with_parent: str | None = None) -> int:
    """Start ``argv`` in a session of its own with output to ``log_path``; returns its pid.

    Its own session: Ctrl-C in the terminal reaches only us, and we stop the servers in order;
    a detached stack also survives its terminal. ``die_with_parent`` names the signal the
    server gets from the kernel when this process dies (Linux: ``PR_SET_PDEATHSIG``, set
    before the server's ``exec``), so a server started for a command never outlives it, even
    after ``kill -9``; None (a detached stack) leaves it running. No ``Popen`` object, so a
    stack left running on purpose is not reported as a leaked child.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    if die_with_parent is not None and sys.platform == "linux":
        sig = int(signal.Signals[die_with_parent])
        argv = [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), str(sig), *argv]
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


# --- publishers ---------------------------------------------------------------------------------

OWNER_FILE = "owner.json"
"""Written by each publisher into its local log directory (``<state_dir>/spool/<topic>/…``)."""


class PublisherRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    pid: int
    create_time: float
    bootstrap: str
    topic: str


def live_publishers(state_dir: Path, bootstrap: str | None = None) -> list[PublisherRecord]:
    """Publishers whose process is running and whose local log is open (its lock is held),
    writing to ``bootstrap`` (any when None); never this process."""
    found = []
    for path in sorted((state_dir / "spool").glob(f"*/*/{OWNER_FILE}")):
        try:
            rec = PublisherRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            continue
        if rec.pid == os.getpid() or (bootstrap is not None and rec.bootstrap != bootstrap):
            continue
        if is_alive(rec.pid, rec.create_time) and _locked(path.parent / "lock"):
            found.append(rec)
    return found


def _locked(path: Path) -> bool:
    try:
        handle = path.open("ab")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


async def stop_publishers(
    state_dir: Path, bootstrap: str | None, timeout_s: float = 30.0
) -> list[str]:
    """SIGTERM every live publisher's process on ``bootstrap`` and wait (up to ``timeout_s``)
    until each has closed its local log (flushed) or exited; returns what was stopped."""
    recs = live_publishers(state_dir, bootstrap)
    for rec in recs:
        _signal(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    waiting = list(recs)
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        live = {(r.pid, r.topic) for r in live_publishers(state_dir, bootstrap)}
        waiting = [r for r in waiting if (r.pid, r.topic) in live]
    return [f"producer pid {r.pid} ({r.topic})" + (" (still running)" if r in waiting else "")
            for r in recs]  # fmt: skip
