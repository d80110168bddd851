"""One shared timer tick that drives every session's sends and expectation timeouts.

A sleeping task per session costs a timer-heap entry and a task wake-up per message; at 10k
sessions the loop spends its time there. Here sessions sit in a timing wheel keyed by tick
number, and each tick calls the due ones synchronously.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, Protocol

from generators.clock import sleep_until

if TYPE_CHECKING:
    from generators.clock import Clock


class Tickable(Protocol):
    due_gen: int

    def fire(self, now: float) -> float | None:
        """Send once; return when to fire next, or None to leave the wheel."""

    def on_timeout(self, seq: int) -> None: ...


class Ticker:
    def __init__(self, clock: Clock, tick_s: float = 0.005) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self._clock = clock
        self._tick_s = tick_s
        self._t0 = clock.monotonic()
        self._done_tick = -1
        self._wheel: dict[int, list[tuple[Tickable, int]]] = {}
        self._timeouts: list[tuple[float, int, Tickable, int]] = []
        self._ids = itertools.count()

    def schedule(self, item: Tickable, at: float) -> None:
        """Fire ``item`` at ``at`` (or the next tick); an earlier schedule of it is dropped."""
        item.due_gen += 1
        tick = max(self._done_tick + 1, math.ceil((at - self._t0) / self._tick_s - 1e-9))
        bucket = self._wheel.get(tick)
        if bucket is None:
            self._wheel[tick] = [(item, item.due_gen)]
        else:
            bucket.append((item, item.due_gen))

    def cancel(self, item: Tickable) -> None:
        item.due_gen += 1

    def expect(self, deadline: float, item: Tickable, seq: int) -> None:
        heapq.heappush(self._timeouts, (deadline, next(self._ids), item, seq))

    def run_due(self, now: float) -> None:
        """Fire everything due by ``now``; exposed for tests that drive time by hand."""
        # The epsilon keeps a tick whose deadline is exactly now from rounding down to the
        # previous one (which would re-arm the same deadline forever on a fake clock).
        current = math.floor((now - self._t0) / self._tick_s + 1e-9)
        wheel = self._wheel
        for tick in range(self._done_tick + 1, current + 1):
            bucket = wheel.pop(tick, None)
            if not bucket:
                continue
            self._done_tick = tick
            for item, gen in bucket:
                if gen != item.due_gen:
                    continue
                nxt = item.fire(now)
                if nxt is not None:
                    # Catch up after a stall, but never by more than one second's burst.
                    self.schedule(item, nxt if nxt > now - 1.0 else now)
        self._done_tick = max(self._done_tick, current)
        timeouts = self._timeouts
        while timeouts and timeouts[0][0] <= now:
            _, _, item, seq = heapq.heappop(timeouts)
            item.on_timeout(seq)

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            await sleep_until(self._clock, self._t0 + (self._done_tick + 1) * self._tick_s)
            self.run_due(self._clock.monotonic())
