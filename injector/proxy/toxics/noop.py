"""``noop``: passes everything through unchanged."""

from __future__ import annotations

from injector.proxy.toxics.base import Stage, ToxicConfig, register


class NoopConfig(ToxicConfig):
    pass


@register("noop", config=NoopConfig)
class NoopStage(Stage):
    pass
