"""``corrupt`` (Aftershock): flips bits or replaces bytes with a per-byte (or per-chunk)
``probability``, optionally seeded, leaving the first ``skip_bytes`` bytes of the link intact."""

from __future__ import annotations

import math
import random
from typing import Literal, cast

from pydantic import Field

from injector.proxy.toxics.base import LinkPort, Stage, ToxicConfig, register


class CorruptConfig(ToxicConfig):
    probability: float = Field(default=0.0, ge=0.0, le=1.0)
    per_chunk: int = Field(default=0, ge=0, le=1)
    mode: Literal["flip", "replace"] = "flip"
    seed: int = 0
    skip_bytes: int = Field(default=0, ge=0)


@register("corrupt", config=CorruptConfig, standard=False)
class CorruptStage(Stage):
    def __init__(self, config: ToxicConfig, link: LinkPort, rng: random.Random) -> None:
        seed = cast("CorruptConfig", config).seed
        super().__init__(config, link, random.Random(seed) if seed else rng)

    seen = 0
    _gap = -1
    """Bytes still to pass untouched before the next corrupted one (geometric draw)."""

    def _draw_gap(self, probability: float) -> int:
        if probability >= 1.0:
            return 0
        # Inverse CDF of the geometric distribution: one draw per corrupted byte instead of
        # one per byte, so a rate of 1e-6 costs next to nothing.
        u = 1.0 - self.rng.random()
        return int(math.log(u) / math.log1p(-probability))

    def _damage(self, value: int) -> int:
        if cast("CorruptConfig", self.config).mode == "replace":
            return (value + self.rng.randrange(1, 256)) % 256
        return value ^ (1 << self.rng.randrange(8))

    def push(self, data: bytes) -> None:
        config = cast("CorruptConfig", self.config)
        start = max(0, config.skip_bytes - self.seen)
        self.seen += len(data)
        if start >= len(data) or config.probability <= 0:
            self.out(data)
            return
        if config.per_chunk:
            if self.rng.random() < config.probability:
                buffer = bytearray(data)
                at = self.rng.randrange(start, len(data))
                buffer[at] = self._damage(buffer[at])
                data = _as_bytes(buffer)
            self.out(data)
            return
        if self._gap < 0:
            self._gap = self._draw_gap(config.probability)
        span = len(data) - start
        if self._gap >= span:
            self._gap -= span
            self.out(data)
            return
        buffer = bytearray(data)
        at = start + self._gap
        while at < len(buffer):
            buffer[at] = self._damage(buffer[at])
            at += 1 + self._draw_gap(config.probability)
        self._gap = at - len(buffer)
        self.out(_as_bytes(buffer))

    def reconfigure(self, config: ToxicConfig) -> None:
        super().reconfigure(config)
        self._gap = -1


def _as_bytes(buffer: bytearray) -> bytes:
    # Transports and stages only need a bytes-like object: skip a second copy of the chunk.
    return cast("bytes", buffer)
