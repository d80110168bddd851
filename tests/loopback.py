"""Helpers for the small loopback servers tests start themselves."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import termios
from typing import Self


async def close_accepted(writers: set[asyncio.StreamWriter]) -> None:
    """Close every connection a test server accepted and wait for each to be closed.

    On 3.11 ``Server.close()`` leaves accepted connections open; a handler still waiting when
    the test's loop ends would leak its socket (a ResourceWarning, an error under
    ``filterwarnings = error``).
    """
    closing = list(writers)
    for w in closing:
        w.close()
    for w in closing:
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()


def unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes waiting in the socket of ``transport`` that its protocol has not read yet: a
    server that waits for 0 after each write makes the client's reads exactly its writes."""
    sock = transport.get_extra_info("socket")
    n = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, n)
    return n[0]


class LineServer:
    """A TCP server on a free loopback port for the life of an ``async with``; subclasses
    answer connections in :meth:`_handle` and add each writer to ``_writers`` while it is
    open, so leaving the block closes every accepted connection."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await close_accepted(self._writers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
