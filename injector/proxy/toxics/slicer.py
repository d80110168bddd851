"""``slicer``: splits chunks into pieces of ``average_size`` ± ``size_variation`` bytes sent
``delay`` microseconds apart."""

from __future__ import annotations

import time
from typing import Annotated, cast

from pydantic import Field

from injector.proxy.toxics.base import (
    MAX_DURATION_MS,
    ChunkBytes,
    TimedStage,
    ToxicConfig,
    register,
)


class SlicerConfig(ToxicConfig):
    average_size: ChunkBytes = 0
    size_variation: ChunkBytes = 0
    delay: Annotated[int, Field(ge=0, le=MAX_DURATION_MS * 1000)] = 0
    """Microseconds."""


@register("slicer", config=SlicerConfig)
class SlicerStage(TimedStage):
    def push(self, data: bytes) -> None:
        config = cast("SlicerConfig", self.config)
        if config.average_size <= 0:
            self.schedule(data, time.monotonic())
            return
        delay_s = max(config.delay, 0) / 1_000_000
        at = max(time.monotonic(), self.last_at)
        offset = 0
        first = True
        while offset < len(data):
            variation = max(config.size_variation, 0)
            size = config.average_size + (
                self.rng.randint(-variation, variation) if variation else 0
            )
            size = max(1, size)
            if not first:
                at += delay_s
            first = False
            self.schedule(data[offset : offset + size], at)
            offset += size
