"""A loopback engine implementing the Engine protocol, for time-driven unit tests.

By default a connection echoes every frame it is sent; ``replies`` replaces the echo with the
frames a test wants the session to receive for each one sent (none, several, altered ...).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from generators.engines.base import Closed
from generators.runner import Generator, GeneratorOptions
from schemas.events import Protocol as WireProtocol
from schemas.targets import Target
from spine.eventlog import MemorySink

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from generators.clock import Clock
    from generators.engines.base import Connection, Endpoint, MessageHandler
    from schemas.load import LoadProfile
    from spine.eventlog.sink import EventSink


class Answers:
    """A MessageHandler that keeps what arrived and how the connection ended."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int | None, int | None]] = []
        self.closed: list[Closed] = []
        self.arrived = asyncio.Event()
        self.ended = asyncio.Event()

    def on_message(self, data: str, status: int | None, seq: int | None) -> None:
        self.messages.append((data, status, seq))
        self.arrived.set()

    def on_closed(self, closed: Closed) -> None:
        self.closed.append(closed)
        self.ended.set()

    async def wait_for(self, n: int) -> None:
        async with asyncio.timeout(20):
            while len(self.messages) < n:
                self.arrived.clear()
                await self.arrived.wait()


def _echo(data: str) -> list[str]:
    return [data]


class FakeConnection:
    def __init__(
        self,
        handler: MessageHandler,
        clock: Clock | None = None,
        replies: Callable[[str], list[str]] = _echo,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.replies = replies
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
        loop = asyncio.get_running_loop()
        for reply in self.replies(data):
            loop.call_soon(self.handler.on_message, reply, None, None)

    def next_request(self) -> int:
        return 0

    def set_header(self, name: str, value: str) -> None:
        return None

    @property
    def busy(self) -> bool:
        return False

    def expire(self, seq: int) -> tuple[int, ...]:
        return ()

    async def close(self, code: int = 1000) -> None:
        if self.open:
            self.open = False
            self.handler.on_closed(Closed("client", code, ""))


class FakeEngine:
    name = "fake"
    protocol = WireProtocol.WS

    def __init__(
        self,
        clock: Clock | None = None,
        replies: Callable[[str], list[str]] = _echo,
        connection: type[FakeConnection] | None = None,
    ) -> None:
        self.clock = clock
        self.replies = replies
        self.connection = connection or FakeConnection
        """The class of the connections it opens (a FakeConnection subclass may fail on cue)."""
        self.connections: list[FakeConnection] = []

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        conn = self.connection(handler, self.clock, self.replies)
        self.connections.append(conn)
        return conn


def fake_generator(
    prof: LoadProfile,
    engine: FakeEngine,
    *,
    tick_s: float,
    sink: EventSink | None = None,
    clock: Clock | None = None,
) -> Generator:
    """A generator of ``prof`` (target ``gw``) whose sessions connect through ``engine``;
    its time is driven by ``clock`` when one is given."""
    return Generator(
        prof,
        Target(name="gw", upstream="127.0.0.1:9", protocol="ws"),
        MemorySink() if sink is None else sink,
        GeneratorOptions(experiment_id="e", tick_s=tick_s),
        clock=clock,
        engine=engine,
    )
