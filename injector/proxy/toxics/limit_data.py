"""``limit_data``: passes at most ``bytes`` bytes on the link in total, then closes."""

from __future__ import annotations

from typing import cast

from injector.proxy.toxics.base import Stage, ToxicConfig, register


class LimitDataConfig(ToxicConfig):
    bytes: int = 0


@register("limit_data", config=LimitDataConfig)
class LimitDataStage(Stage):
    passed = 0

    def start(self) -> None:
        if self._remaining() <= 0:
            self.link.loop.call_soon(self.link.close_connection)

    def _remaining(self) -> int:
        return cast("LimitDataConfig", self.config).bytes - self.passed

    def push(self, data: bytes) -> None:
        remaining = self._remaining()
        if remaining <= 0:
            return
        if len(data) >= remaining:
            self.passed += remaining
            self.out(data[:remaining] if len(data) > remaining else data)
            self.link.close_connection()
            return
        self.passed += len(data)
        self.out(data)
