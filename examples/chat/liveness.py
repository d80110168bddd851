"""Silence detection that does not blame a peer for our own event-loop lag."""

from __future__ import annotations

import asyncio


class Silence:
    """Counts how long a peer has been silent, in *our* running time.

    ``tick()`` is called every ``interval_s`` and adds at most ``interval_s`` to the silence:
    when it runs late, the extra time was spent in this process (an overloaded loop, a GC
    pause), and the peer's answer may well be sitting unread in a socket buffer. Without this,
    an overloaded service declares a healthy dependency dead and starts a false cascade.
    """

    def __init__(self, dead_after_s: float, interval_s: float, what: str) -> None:
        self.dead_after_s = dead_after_s
        self.interval_s = interval_s
        self._what = what
        self._silent_s = 0.0
        self._last_tick: float | None = None

    def heard(self) -> None:
        self._silent_s = 0.0

    def restart(self) -> None:
        self._silent_s = 0.0
        self._last_tick = None

    def tick(self) -> None:
        """Raise TimeoutError once silent for ``dead_after_s``."""
        now = asyncio.get_running_loop().time()
        if self._last_tick is not None:
            self._silent_s += min(now - self._last_tick, self.interval_s)
        self._last_tick = now
        if self._silent_s > self.dead_after_s:
            raise TimeoutError(f"{self._what} silent for {self.dead_after_s} s")

    async def watch(self) -> None:
        """Tick every ``interval_s`` until silent too long (then raise TimeoutError)."""
        self.restart()
        while True:
            self.tick()
            await asyncio.sleep(self.interval_s)
