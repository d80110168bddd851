"""Toxic types, one module each, registered by name in :data:`REGISTRY` on import."""

from injector.proxy.toxics import (  # noqa: F401 - imported to register the types
    bandwidth,
    corrupt,
    drop,
    latency,
    limit_data,
    noop,
    reset_peer,
    slicer,
    slow_close,
    timeout,
)
from injector.proxy.toxics.base import REGISTRY, Stage, ToxicConfig, ToxicType

__all__ = ["REGISTRY", "Stage", "ToxicConfig", "ToxicType"]
