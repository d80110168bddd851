"""``drop`` / ``packet_loss`` (Aftershock): drops whole chunks with probability ``loss_rate``;
``correlation`` is the chance a chunk shares the previous chunk's fate (bursts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from injector.proxy.toxics.base import Stage, ToxicConfig, register


class DropConfig(ToxicConfig):
    loss_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    correlation: float = Field(default=0.0, ge=0.0, le=1.0)


@register("drop", "packet_loss", config=DropConfig, standard=False)
class DropStage(Stage):
    _last_dropped = False
    dropped = 0

    def push(self, data: bytes) -> None:
        config = cast("DropConfig", self.config)
        if config.correlation and self.rng.random() < config.correlation:
            drop = self._last_dropped
        else:
            drop = self.rng.random() < config.loss_rate
        self._last_dropped = drop
        if drop:
            self.dropped += 1
            return
        self.out(data)
