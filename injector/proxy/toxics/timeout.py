"""``timeout``: drops all data; closes the connection after ``timeout`` ms (0 = never).
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

    def start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        self.stop()
        timeout_ms = cast("TimeoutConfig", self.config).timeout
        if timeout_ms > 0:
            self._timer = self.link.loop.call_later(timeout_ms / 1000, self.link.close_connection)

    def push(self, data: bytes) -> None:
        """Swallowed."""

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
