"""Protocol engines behind one interface; pick one by name with :func:`engine_for`."""

from __future__ import annotations

from generators.engines.base import Closed, Connection, Endpoint, Engine, MessageHandler
from generators.engines.registry import ENGINE_NAMES, engine_for

__all__ = [
    "ENGINE_NAMES",
    "Closed",
    "Connection",
    "Endpoint",
    "Engine",
    "MessageHandler",
    "engine_for",
]
