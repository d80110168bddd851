"""Processes started by tests: always stopped, reaped and their pipes closed, even when the
test fails or times out, so one failing test never fails another through a ``ResourceWarning``
(``filterwarnings = error``) about a pipe or a process collected later.

Tests take the ``procs`` fixture (tests/conftest.py) and start every process through it:
``procs.popen(...)``, ``procs.run(...)`` (like ``subprocess.run`` with output captured), or in
async tests ``await procs.exec(...)`` (``asyncio.create_subprocess_exec``). Each process gets
its own session, so its whole process group can be stopped: SIGTERM, then SIGKILL after
:data:`STOP_GRACE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

STOP_GRACE_S = 10.0
"""How long a process left running by a test may take to end after SIGTERM."""

_BURN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process's group (it leads one: each process starts its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Processes:
    def __init__(self) -> None:
        self._popen: list[subprocess.Popen[Any]] = []
        self._async: list[asyncio.subprocess.Process] = []

    # -- starting --------------------------------------------------------------------------

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
        self._popen.append(proc)
        return proc

    def run(
        self, args: Sequence[str], *, timeout: float, input: Any = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run(args, capture_output=True, timeout=timeout, ...)``; on a timeout
        ``subprocess.TimeoutExpired`` fails the test and the teardown stops the process."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kwargs.setdefault("stdin", subprocess.PIPE)
        proc = self.popen(args, **kwargs)
        out, err = proc.communicate(input, timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    async def exec(self, program: str, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        kwargs.setdefault("start_new_session", True)
        proc = await asyncio.create_subprocess_exec(program, *args, **kwargs)
        self._async.append(proc)
        return proc

    def busy_cpus(self, n: int, max_s: float) -> None:
        """Keep ``n`` CPUs busy (Python busy loops) until the test ends, ``max_s`` at most."""
        for _ in range(n):
            self.popen([sys.executable, "-c", _BURN.format(s=max_s)])

    # -- stopping --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop, reap and close every process started through :meth:`popen` or :meth:`run`."""
        procs, self._popen = self._popen, []
        for p in procs:
            if p.poll() is None:
                _signal_group(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.kill()
                p.wait()
            for pipe in (p.stdin, p.stdout, p.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    async def aclose(self) -> None:
        """Stop, reap and close every process started through :meth:`exec`."""
        procs, self._async = self._async, []
        for p in procs:
            if p.returncode is None:
                _signal_group(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await p.wait()
            except TimeoutError:
                _signal_group(p.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            # Reading to the end lets the transport see EOF on every pipe (a pipe whose
            # reading was paused by a full buffer would otherwise stay open), then reaps.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_GRACE_S):
                    await p.communicate()
            transport = getattr(p, "_transport", None)
            if transport is not None:
                transport.close()
