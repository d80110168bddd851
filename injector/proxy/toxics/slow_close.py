"""``slow_close``: on EOF, wait ``delay`` ms before closing the other side."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from injector.proxy.toxics.base import DurationMs, Stage, ToxicConfig, register

if TYPE_CHECKING:
    import asyncio


class SlowCloseConfig(ToxicConfig):
    delay: DurationMs = 0


@register("slow_close", config=SlowCloseConfig)
class SlowCloseStage(Stage):
    _timer: asyncio.TimerHandle | None = None

    def eof(self) -> None:
        delay_s = max(cast("SlowCloseConfig", self.config).delay, 0) / 1000
        self._timer = self.link.loop.call_later(delay_s, self._close)

    def _close(self) -> None:
        self._timer = None
        self.out_eof()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._close()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
