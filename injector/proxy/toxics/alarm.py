"""A one-shot alarm for an event loop, precise to tens of microseconds where the OS allows.

Loop timers are too coarse for a latency toxic's 2 ms error budget: uvloop (libuv) keeps time
in whole milliseconds, cached per loop iteration, so a timer fires up to about a millisecond
early or late (p99 ~1 ms off in ``bench/bench_proxy.py``'s in-process probe). On Linux the
alarm is a ``timerfd`` armed at an absolute ``CLOCK_MONOTONIC`` time (``time.monotonic()``'s
clock) and watched with ``loop.add_reader``; elsewhere it falls back to ``loop.call_at``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class Alarm:
    """Calls ``callback`` once at (or just after) the ``time.monotonic()`` time last armed.

    ``precise`` tells whether the timerfd is in use (else loop timers, ~1 ms granularity on
    uvloop).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        # Weakly: a loop's alarm (and its descriptor) must not keep the loop alive.
        self._loop = weakref.ref(loop)
        self.callback = callback
        self._fd = -1
        self._watching = False
        self._handle: asyncio.TimerHandle | None = None
        self._spec = _Itimerspec()
        self._libc = _LIBC
        if self._libc is not None:
            fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                weakref.finalize(self, os.close, fd)
        self.precise = self._fd >= 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the alarm's event loop is gone")
        return loop

    def arm(self, at: float) -> None:
        """Fire at monotonic time ``at`` (replacing any earlier arming)."""
        if self._fd < 0:
            if self._handle is not None:
                self._handle.cancel()
            delay = max(0.0, at - time.monotonic())
            self._handle = self.loop.call_at(self.loop.time() + delay, self._fire_timer)
            return
        seconds = int(at)
        value = self._spec.it_value
        value.tv_sec = seconds
        value.tv_nsec = int((at - seconds) * 1e9)
        assert self._libc is not None  # a timerfd exists only when libc has it
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        if not self._watching:
            self._watching = True
            self.loop.add_reader(self._fd, self._fire_fd)

    def disarm(self) -> None:
        """Stop watching; a later :meth:`arm` starts again."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._watching:
            self._watching = False
            loop = self._loop()
            if loop is not None:
                with contextlib.suppress(RuntimeError, ValueError):  # loop already closed
                    loop.remove_reader(self._fd)

    def _fire_fd(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return  # re-armed for later before the expiry was read
        self.callback()

    def _fire_timer(self) -> None:
        self._handle = None
        self.callback()
