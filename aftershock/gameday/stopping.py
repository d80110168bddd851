"""Ending a run whatever its tasks do: cancellation that cannot be lost, and a last-resort
watchdog for an interrupted run that does not end."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

RECANCEL_EVERY_S = 0.1


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]], *, every_s: float = RECANCEL_EVERY_S
) -> None:
    """Cancel ``tasks`` and return once every one has ended, cancelling again every
    ``every_s`` while one still runs.

    One ``cancel()`` is not enough: on Python 3.11 ``asyncio.wait_for`` returns the inner
    result instead of raising when the inner future finishes in the same loop iteration as the
    cancellation, and redis-py sends every command through it. A polling loop that lost its
    cancellation that way polls on, and a task group waiting for it never exits. Cancelled
    again, it ends at its next ``await``. A cancellation of the caller meanwhile is held back
    until the tasks have ended, then raised."""
    pending = {t for t in tasks if not t.done()}
    cancelled = False
    while pending:
        for t in pending:
            t.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=every_s)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class ExitWatchdog:
    """A daemon thread that ends the process with ``status`` when its deadline passes, unless
    disarmed first: the last resort for a clean-up step that never returns or an event loop
    that is blocked (nothing on the loop can help then). Before it ends the process it writes
    why, and every thread's stack, to stderr."""

    def __init__(self, status: int = 2) -> None:
        self.status = status
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._why = ""
        self._thread: threading.Thread | None = None

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` at which the process exits, if armed."""
        return self._deadline

    def arm(self, within_s: float, why: str) -> None:
        """Exit ``within_s`` from now unless disarmed; an earlier deadline already set stays."""
        at = time.monotonic() + within_s
        with self._cond:
            if self._deadline is not None and self._deadline <= at:
                return
            self._deadline, self._why = at, why
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="exit-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(1.0)

    def _watch(self) -> None:
        with self._cond:
            while self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    message = f"\n{self._why}: exiting with status {self.status}\n"
                    os.write(2, message.encode())
                    # where it was stuck, for the bug report: every thread's stack
                    faulthandler.dump_traceback(file=2, all_threads=True)
                    os._exit(self.status)
                self._cond.wait(left)
