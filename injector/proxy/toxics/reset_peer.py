"""``reset_peer``: on the first chunk, drop it, wait ``timeout`` ms, then close both sockets
with RST (SO_LINGER 0)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from injector.proxy.toxics.base import DurationMs, Stage, ToxicConfig, register

if TYPE_CHECKING:
    import asyncio


class ResetPeerConfig(ToxicConfig):
    timeout: DurationMs = 0


@register("reset_peer", config=ResetPeerConfig)
class ResetPeerStage(Stage):
    _timer: asyncio.TimerHandle | None = None
    _triggered = False

    def push(self, data: bytes) -> None:
        if self._triggered:
            return
        self._triggered = True
        timeout_s = max(cast("ResetPeerConfig", self.config).timeout, 0) / 1000
        self._timer = self.link.loop.call_later(timeout_s, self.link.reset_connection)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> None:
        self.stop()
