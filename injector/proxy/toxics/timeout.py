"""``timeout``: drops all data; closes the connection once ``timeout`` ms pass with no data on
its link (0 = never). Every chunk restarts the clock, as Toxiproxy's does: an idle timeout.
Removing it closes the connections it was active on."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from injector.proxy.toxics.base import DurationMs, Stage, ToxicConfig, register

if TYPE_CHECKING:
    import asyncio


class TimeoutConfig(ToxicConfig):
    timeout: DurationMs = 0


@register("timeout", config=TimeoutConfig)
class TimeoutStage(Stage):
    _timer: asyncio.TimerHandle | None = None
    _last_s = 0.0
    """Loop time of the last chunk (or of the start): the clock runs from here."""

    def start(self) -> None:
        self._last_s = self.link.loop.time()
        self._arm()

    def _timeout_s(self) -> float:
        return cast("TimeoutConfig", self.config).timeout / 1000

    def _arm(self) -> None:
        self.stop()
        timeout_s = self._timeout_s()
        if timeout_s > 0:
            when = self._last_s + timeout_s
            self._timer = self.link.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        # A chunk since the timer was set moved the deadline: wait for the rest of it (one
        # timer per idle period, not one per chunk).
        if self.link.loop.time() < self._last_s + self._timeout_s():
            self._arm()
            return
        self.link.close_connection()

    def push(self, data: bytes) -> None:
        """Swallowed; restarts the clock."""
        self._last_s = self.link.loop.time()

    def eof(self) -> None:
        """Swallowed too: the peer sees nothing until the timeout closes the connection."""

    def removed(self) -> None:
        self.stop()
        self.link.close_connection()

    def flush(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reconfigure(self, config: ToxicConfig) -> None:
        super().reconfigure(config)
        if self.active:
            self._arm()
