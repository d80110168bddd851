"""Time sources. Everything that schedules takes a :class:`Clock` so tests can drive time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale."""

    def wall_ns(self) -> int:
        """Nanoseconds since the epoch."""

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` once ``monotonic() >= deadline``."""


class SystemClock:
    # The time functions themselves: read on the hot path, a Python method around them is
    # a frame per message for nothing.
    monotonic = staticmethod(time.monotonic)
    wall_ns = staticmethod(time.time_ns)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, deadline - time.monotonic()), callback)


class _FakeHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when :meth:`advance` is called; callbacks fire in deadline order."""

    def __init__(self, start: float = 0.0, wall_start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start
        self._start = start
        self._wall0 = wall_start_ns
        self._timers: list[tuple[float, int, _FakeHandle, Callable[[], None]]] = []
        self._ids = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall_ns(self) -> int:
        return self._wall0 + int((self._now - self._start) * 1e9)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        handle = _FakeHandle()
        heapq.heappush(self._timers, (deadline, next(self._ids), handle, callback))
        return handle

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing timers as their deadlines pass and letting tasks run."""
        end = self._now + seconds
        await _settle()
        while self._timers and self._timers[0][0] <= end:
            deadline, _, handle, callback = heapq.heappop(self._timers)
            self._now = max(self._now, deadline)
            if not handle.cancelled:
                callback()
                await _settle()
        self._now = end
        await _settle()


async def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_any(
    clock: Clock, futures: Iterable[asyncio.Future[Any]], deadline: float | None = None
) -> None:
    """Wait until any of ``futures`` is done or ``deadline`` passes, without creating tasks."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    futs = list(futures)
    for f in futs:
        if f.done():
            return
        f.add_done_callback(wake)
    handle = clock.call_at(deadline, wake) if deadline is not None else None
    try:
        await waiter
    finally:
        for f in futs:
            f.remove_done_callback(wake)
        if handle is not None:
            handle.cancel()
