"""Engines by name: ``ws`` (reference, ``websockets``), ``picows``, ``http``, ``tcp``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from generators.engines.http import HttpEngine
from generators.engines.tcp import TcpEngine
from generators.engines.ws import WebSocketEngine
from generators.errors import PlanError
from schemas.events import Protocol as WireProtocol

if TYPE_CHECKING:
    from generators.engines.base import Engine
    from schemas.load import LoadProfile

ENGINE_NAMES = ("ws", "picows", "http", "tcp")
DEFAULT_FOR = {WireProtocol.WS: "ws", WireProtocol.HTTP: "http", WireProtocol.TCP: "tcp"}


def engine_for(
    protocol: WireProtocol,
    profile: LoadProfile,
    name: str | None = None,
    compression: str | None = None,
) -> Engine:
    """The engine to reach a target of ``protocol``; ``name`` picks among compatible ones."""
    chosen = name or DEFAULT_FOR[protocol]
    if chosen not in ENGINE_NAMES:
        raise PlanError(f"unknown engine {chosen!r}; choose one of {', '.join(ENGINE_NAMES)}")
    if chosen in ("ws", "picows") and protocol is not WireProtocol.WS:
        raise PlanError(f"engine {chosen!r} speaks WebSocket but the target is {protocol.value}")
    if chosen == "ws":
        return WebSocketEngine(compression=compression)
    if chosen == "picows":
        from generators.engines.picows_engine import PicowsEngine

        return PicowsEngine()
    if chosen == "http":
        if protocol is not WireProtocol.HTTP:
            raise PlanError(f"engine 'http' cannot reach a {protocol.value} target")
        return HttpEngine(profile.http_mix, seed=profile.seed, options=profile.http)
    if protocol is not WireProtocol.TCP:
        raise PlanError(f"engine 'tcp' cannot reach a {protocol.value} target")
    return TcpEngine(framing=profile.framing)
