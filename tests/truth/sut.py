"""Systems under test that log their own ground truth, for checking the analyzers' figures.

:class:`TruthEcho` is a line echo server over TCP that writes down every line it echoed, per
connection, and the exact wall-clock times (ns) at which it stopped and resumed answering.
The analyzers' figures are compared with this log, not with what the test planned.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tests.loopback import close_accepted


@dataclass
class EchoLog:
    echoed: int = 0
    """Lines answered, all connections together."""
    connections: int = 0
    outages: list[tuple[int, int]] = field(default_factory=list)
    """(stopped, resumed) wall-clock ns of every interval the server did not answer."""


class TruthEcho:
    """Echoes each line back to its sender; :meth:`stop_answering` makes it swallow lines (the
    clients time out) until :meth:`resume`, both logged with the time they took effect."""

    def __init__(self) -> None:
        self.log = EchoLog()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._mute_since: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop_answering(self) -> None:
        if self._mute_since is None:
            self._mute_since = time.time_ns()

    def resume(self) -> None:
        if self._mute_since is not None:
            self.log.outages.append((self._mute_since, time.time_ns()))
            self._mute_since = None

    async def __aenter__(self) -> TruthEcho:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await close_accepted(self._writers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.log.connections += 1
        try:
            while line := await reader.readline():
                if self._mute_since is not None:
                    continue
                writer.write(line)
                self.log.echoed += 1
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
