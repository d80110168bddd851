"""A loopback engine implementing the Engine protocol, for time-driven unit tests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from generators.engines.base import Closed
from schemas.events import Protocol as WireProtocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from generators.clock import Clock
    from generators.engines.base import Connection, Endpoint, MessageHandler


class FakeConnection:
    def __init__(self, handler: MessageHandler, clock: Clock | None = None) -> None:
        self.handler = handler
        self.clock = clock
        self.open = True
        self.sent: list[str] = []
        self.sent_at: list[float] = []

    @property
    def is_open(self) -> bool:
        return self.open

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        self.sent.append(data)
        if self.clock is not None:
            self.sent_at.append(self.clock.monotonic())
        asyncio.get_running_loop().call_soon(self.handler.on_message, data, None, None)

    def set_header(self, name: str, value: str) -> None:
        return None

    async def close(self, code: int = 1000) -> None:
        if self.open:
            self.open = False
            self.handler.on_closed(Closed("client", code, ""))


class FakeEngine:
    name = "fake"
    protocol = WireProtocol.WS

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.connections: list[FakeConnection] = []

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        conn = FakeConnection(handler, self.clock)
        self.connections.append(conn)
        return conn
