"""Raw TCP engine: newline-delimited or 4-byte big-endian length-prefixed messages.

A frame longer than the engine's limit (a line that does not end, a length prefix beyond it)
ends the connection as an error saying so: the buffer never holds more than one frame's worth.
"""

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
"""The default limit of one frame's length in bytes (without its newline or length prefix)."""
_LEN = struct.Struct(">I")


class _TcpConnection(asyncio.Protocol):
    __slots__ = (
        "_broken",
        "_buf",
        "_closed",
        "_framing",
        "_handler",
        "_max_frame",
        "_open",
        "_transport",
        "_we_closed",
    )

    def __init__(self, handler: MessageHandler, framing: Framing, max_frame: int) -> None:
        self._handler = handler
        self._framing = framing
        self._max_frame = max_frame
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._open = False
        self._we_closed = False
        self._broken: str | None = None
        """Why the peer's stream cannot be read further (it broke the framing)."""
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast("asyncio.Transport", transport)
        self._open = True

    def data_received(self, data: bytes) -> None:
        if self._broken is not None:
            return
        buf = self._buf
        buf += data
        deliver = self._handler.on_message
        limit = self._max_frame
        if self._framing == "line":
            if b"\n" not in data:
                if len(buf) > limit:
                    self._fail(f"a line longer than {limit} bytes")
                return
            long = len(buf) > limit  # else no line in it can be
            *lines, rest = bytes(buf).split(b"\n")
            buf.clear()
            buf += rest
            for line in lines:
                if long and len(line) > limit:
                    self._fail(f"a line longer than {limit} bytes")
                    return
                deliver(line.decode(errors="replace"), None, None)
            if len(rest) > limit:
                self._fail(f"a line longer than {limit} bytes")
            return
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if n > limit:
                self._fail(f"a length prefix of {n} bytes, over the limit of {limit}")
                return
            if len(buf) < 4 + n:
                return
            frame = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            deliver(frame.decode(errors="replace"), None, None)

    def _fail(self, why: str) -> None:
        """The peer broke the framing: end the connection as an error saying why."""
        self._broken = f"framing broken by the server: {why}"
        self._open = False
        self._buf.clear()
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if self._broken is not None:
            closed = Closed("error", None, self._broken)
        elif self._we_closed:
            closed = Closed("client", None, "")
        elif exc is not None:
            closed = Closed("error", None, str(exc))
        elif self._buf:
            # What came after the last whole frame never became one: said, not dropped unseen.
            closed = Closed("server", None, f"EOF within a frame ({len(self._buf)} bytes unread)")
        else:
            closed = Closed("server", None, "EOF")
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

    def __init__(self, framing: Framing = "line", max_frame_bytes: int = MAX_FRAME) -> None:
        self.framing: Framing = framing
        self.max_frame_bytes = max_frame_bytes

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
                    lambda: _TcpConnection(handler, self.framing, self.max_frame_bytes),
                    endpoint.host,
                    endpoint.port,
                )
        except TimeoutError as exc:
            raise ConnectError(f"connect to {endpoint.host}:{endpoint.port} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"connect to {endpoint.host}:{endpoint.port} failed: {exc}") from exc
        return conn
