"""Raw TCP engine: newline-delimited or 4-byte big-endian length-prefixed messages."""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Literal, cast

from generators.engines.base import Closed, Connection, Endpoint, MessageHandler
from generators.errors import ConnectError, ConnectionLost
from schemas.events import Protocol as WireProtocol

if TYPE_CHECKING:
    from collections.abc import Mapping

Framing = Literal["line", "length_prefixed"]
MAX_FRAME = 16 * 1024 * 1024
_LEN = struct.Struct(">I")


class _TcpConnection(asyncio.Protocol):
    __slots__ = ("_buf", "_closed", "_framing", "_handler", "_open", "_transport", "_we_closed")

    def __init__(self, handler: MessageHandler, framing: Framing) -> None:
        self._handler = handler
        self._framing = framing
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._open = False
        self._we_closed = False
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast("asyncio.Transport", transport)
        self._open = True

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        deliver = self._handler.on_message
        if self._framing == "line":
            if b"\n" not in data:
                return
            *lines, rest = bytes(buf).split(b"\n")
            buf.clear()
            buf += rest
            for line in lines:
                deliver(line.decode(errors="replace"), None, None)
            return
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if n > MAX_FRAME:
                self._handler.on_message("", None, None)
                if self._transport is not None:
                    self._transport.abort()
                return
            if len(buf) < 4 + n:
                return
            frame = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            deliver(frame.decode(errors="replace"), None, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if self._we_closed:
            closed = Closed("client", None, "")
        elif exc is None:
            closed = Closed("server", None, "EOF")
        else:
            closed = Closed("error", None, str(exc))
        self._handler.on_closed(closed)
        if not self._closed.done():
            self._closed.set_result(None)

    @property
    def is_open(self) -> bool:
        return self._open

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        transport = self._transport
        if not self._open or transport is None:
            raise ConnectionLost("TCP connection is closed")
        raw = data.encode()
        if self._framing == "line":
            transport.write(raw + b"\n")
        else:
            transport.write(_LEN.pack(len(raw)) + raw)

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
        if self._closed.done() or self._transport is None:
            return
        self._we_closed = True
        self._open = False
        self._transport.close()
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(self._closed)
        except TimeoutError:
            self._transport.abort()


class TcpEngine:
    name = "tcp"
    protocol = WireProtocol.TCP

    def __init__(self, framing: Framing = "line") -> None:
        self.framing: Framing = framing

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _TcpConnection(handler, self.framing), endpoint.host, endpoint.port
                )
        except TimeoutError as exc:
            raise ConnectError(f"connect to {endpoint.host}:{endpoint.port} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"connect to {endpoint.host}:{endpoint.port} failed: {exc}") from exc
        return conn
