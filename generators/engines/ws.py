"""WebSocket engine on the ``websockets`` library's Sans-I/O protocol over an asyncio transport.

Driving ``websockets.client.ClientProtocol`` straight from ``asyncio.Protocol`` callbacks keeps
the library's handshake and framing while making sends synchronous (no task per message).
permessage-deflate is off unless ``compression="deflate"``: it costs ~3× memory per session.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from generators.engines.base import Closed, Connection, Endpoint, MessageHandler
from generators.errors import ConnectError, ConnectionLost, HandshakeError
from schemas.events import Protocol as WireProtocol

if TYPE_CHECKING:
    from collections.abc import Mapping

CLOSE_TIMEOUT_S = 2.0


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class _WsConnection(asyncio.Protocol):
    __slots__ = (
        "_closed",
        "_fragments",
        "_handler",
        "_handshake",
        "_headers",
        "_proto",
        "_transport",
        "_we_closed",
    )

    def __init__(
        self, proto: ClientProtocol, handler: MessageHandler, headers: Mapping[str, str]
    ) -> None:
        self._proto = proto
        self._handler = handler
        self._headers = headers
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = loop.create_future()
        # A handshake that fails after the caller gave up must not log "never retrieved".
        self._handshake.add_done_callback(_retrieve)
        self._closed: asyncio.Future[None] = loop.create_future()
        self._fragments: list[bytes] | None = None
        self._we_closed = False

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast("asyncio.Transport", transport)
        request = self._proto.connect()
        for name, value in self._headers.items():
            request.headers[name] = value
        self._proto.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        proto = self._proto
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Response):
                self._on_response(event)
                continue
            if not isinstance(event, Frame):
                continue
            op = event.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if event.fin:
                    self._deliver(event.data)
                else:
                    self._fragments = [bytes(event.data)]
            elif op is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(event.data))
                if event.fin:
                    whole, self._fragments = b"".join(self._fragments), None
                    self._deliver(whole)
        self._flush()

    def eof_received(self) -> bool | None:
        self._proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(
                ConnectError(f"connection closed during the handshake: {exc or 'EOF'}")
            )
        else:
            rcvd = self._proto.close_rcvd
            if self._we_closed:
                closed = Closed("client", rcvd.code if rcvd else 1000, "")
            elif rcvd is not None:
                closed = Closed("server", rcvd.code, rcvd.reason)
            else:
                closed = Closed("error", None, str(exc) if exc else "connection reset")
            self._handler.on_closed(closed)
        if not self._closed.done():
            self._closed.set_result(None)

    # helpers ---------------------------------------------------------------------------------

    def _on_response(self, response: Response) -> None:
        exc = self._proto.handshake_exc
        if exc is not None:
            if not self._handshake.done():
                self._handshake.set_exception(
                    HandshakeError(f"WebSocket upgrade refused: {exc}", response.status_code)
                )
            if self._transport is not None:
                self._transport.abort()
        elif not self._handshake.done():
            self._handshake.set_result(None)

    def _deliver(self, payload: bytes | bytearray | memoryview) -> None:
        try:
            text = bytes(payload).decode()
        except UnicodeDecodeError:
            text = bytes(payload).decode(errors="replace")
        self._handler.on_message(text, None, None)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in self._proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._proto.close_expected() and self._proto.state is State.CLOSED:
            transport.close()

    # Connection ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._proto.state is State.OPEN

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        if self._proto.state is not State.OPEN:
            raise ConnectionLost("WebSocket is not open")
        self._proto.send_text(data.encode())
        self._flush()

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
        if self._closed.done():
            return
        self._we_closed = True
        if self._proto.state is State.OPEN:
            self._proto.send_close(code)
            self._flush()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(self._closed)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()
            await asyncio.shield(self._closed)


class WebSocketEngine:
    """The reference WebSocket engine (``websockets``)."""

    name = "ws"
    protocol = WireProtocol.WS

    def __init__(self, compression: str | None = None, max_size: int = 1 << 20) -> None:
        if compression not in (None, "deflate"):
            raise ValueError(f"compression must be None or 'deflate', not {compression!r}")
        self._compression = compression
        self._max_size = max_size

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        uri = parse_uri(endpoint.url("wss" if endpoint.secure else "ws"))
        extensions = [ClientPerMessageDeflateFactory()] if self._compression else None
        proto = ClientProtocol(uri, extensions=extensions, max_size=self._max_size)
        loop = asyncio.get_running_loop()
        conn = _WsConnection(proto, handler, headers)
        try:
            async with asyncio.timeout(timeout_s):
                transport, _ = await loop.create_connection(
                    lambda: conn, endpoint.host, endpoint.port
                )
                try:
                    await conn._handshake
                except BaseException:
                    transport.abort()
                    raise
        except TimeoutError as exc:
            raise ConnectError(f"connect to {endpoint.url('ws')} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"connect to {endpoint.url('ws')} failed: {exc}") from exc
        return conn
