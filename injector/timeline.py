"""The experiment's clock: offsets from the start of the method phase that can pause and skip.

Pausing freezes the offset (nothing is injected or reverted, active faults stay); resuming
continues where it stopped; skipping jumps the offset forward. The time source is injectable
so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class Timeline:
    def __init__(self, monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._now = monotonic_ns
        self._t0_ns: int | None = None
        self._paused_total_ns = 0
        self._paused_since_ns: int | None = None
        self._skipped_s = 0.0
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._t0_ns = self._now()

    @property
    def started(self) -> bool:
        return self._t0_ns is not None

    @property
    def paused(self) -> bool:
        return self._paused_since_ns is not None

    def offset_s(self) -> float:
        """Seconds of timeline elapsed: wall time since start, minus pauses, plus skips."""
        if self._t0_ns is None:
            return 0.0
        now = self._paused_since_ns if self._paused_since_ns is not None else self._now()
        return (now - self._t0_ns - self._paused_total_ns) / 1e9 + self._skipped_s

    def pause(self) -> bool:
        """Freeze the timeline; False if it already was paused."""
        if self._paused_since_ns is not None:
            return False
        self._paused_since_ns = self._now()
        self._notify()
        return True

    def resume(self) -> bool:
        if self._paused_since_ns is None:
            return False
        self._paused_total_ns += self._now() - self._paused_since_ns
        self._paused_since_ns = None
        self._notify()
        return True

    def skip_to(self, offset_s: float) -> None:
        """Jump forward to ``offset_s`` (never backwards)."""
        gap = offset_s - self.offset_s()
        if gap > 0:
            self._skipped_s += gap
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, offset_s: float) -> float:
        """Return once the timeline reaches ``offset_s``; returns the lateness in seconds."""
        while True:
            changed = self._changed
            if self.paused:
                await changed.wait()
                continue
            delta = offset_s - self.offset_s()
            if delta <= 0:
                return -delta
            try:
                async with asyncio.timeout(delta):
                    await changed.wait()
            except TimeoutError:
                pass
