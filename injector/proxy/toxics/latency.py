"""``latency``: each chunk delayed by ``latency`` ms ± uniform ``jitter`` ms, order kept."""

from __future__ import annotations

import time
from typing import cast

from injector.proxy.toxics.base import DurationMs, TimedStage, ToxicConfig, register


class LatencyConfig(ToxicConfig):
    latency: DurationMs = 0
    jitter: DurationMs = 0


@register("latency", config=LatencyConfig)
class LatencyStage(TimedStage):
    def push(self, data: bytes) -> None:
        config = cast("LatencyConfig", self.config)
        delay_ms = float(config.latency)
        if config.jitter:
            delay_ms += self.rng.uniform(-config.jitter, config.jitter)
        if delay_ms <= 0 and not self._queue:
            self.out(data)
            return
        self.schedule(data, time.monotonic() + delay_ms / 1000)
