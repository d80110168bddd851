"""``bandwidth``: paces a link to ``rate`` KB/s (1 KB = 1000 B); ``rate`` ≤ 0 is unlimited."""

from __future__ import annotations

import time
from typing import cast

from injector.proxy.toxics.base import TimedStage, ToxicConfig, register

_SLICE_S = 0.1
"""Large chunks leave in slices of at most this much time at the rate, so pacing is smooth."""


class BandwidthConfig(ToxicConfig):
    rate: int = 0


@register("bandwidth", config=BandwidthConfig)
class BandwidthStage(TimedStage):
    def push(self, data: bytes) -> None:
        rate_bps = cast("BandwidthConfig", self.config).rate * 1000
        if rate_bps <= 0:
            if self._queue:
                self.schedule(data, self.last_at)
            else:
                self.out(data)
            return
        at = max(time.monotonic(), self.last_at)
        step = max(1, int(rate_bps * _SLICE_S))
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step] if len(data) > step else data
            at += len(piece) / rate_bps
            self.schedule(piece, at)
