"""HTTP/1.1 engine: keep-alive connections on an asyncio protocol, responses parsed in C.

One connection per session, kept alive. A request is written as soon as the connection has room
for it (the outbox calls :meth:`_HttpConnection.send` once per tick for all sessions): with
``pipelining: 1``, when the previous answer is in; one more may wait, and leaves the moment that
answer arrives. HTTP/1.1 answers in the order it was asked, so the seqs of the requests in flight
sit in a FIFO and each complete response (parsed by ``httptools``, i.e. llhttp) is the oldest
one's: no task, future or timer per request. Timeouts are the ticker's: the session calls
:meth:`_HttpConnection.expire` for an overdue answer, and the connection closes, as HTTP clients
do, since every answer behind the lost one would be late too.

An answer whose length the server does not declare (no ``content-length``, not chunked) ends
when the server closes the connection, as HTTP/1.1 says: llhttp has no end-of-stream call, so
the connection completes it then. A response longer than the engine's limit ends the connection
as an error: what a server sends is never buffered without bound.

What a session's connect step does is the profile's choice (``http.connect``): open the TCP
connection only, or also send one request and wait for its answer. Plain ``http`` targets only:
HTTP/2 and TLS session resumption are not spoken; ``secure`` targets get TLS with the system's
trust store.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from bisect import bisect
from collections import deque
from itertools import accumulate
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from generators.engines.base import Closed, Connection, Endpoint, MessageHandler
from generators.errors import ConnectError, ConnectionLost, HandshakeError
from schemas.events import Protocol as WireProtocol
from schemas.load import HttpOptions, HttpRequestSpec, RequestConnect

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONNECT_SEQ = -1
"""The seq of a connect request in the FIFO: its answer completes the connect, it is not a
message of the session."""
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
"""Headers the engine writes itself."""
MAX_RESPONSE = 16 * 1024 * 1024
"""The default limit of one response's length in bytes (head and body)."""
MAX_HEAD = 64 * 1024
"""The limit of a response's head in bytes (servers' own limits are 8-64 KiB). httptools joins
a header's pieces one read at a time, so a header without end would cost time growing with the
square of its length."""


def _text(body: bytes | bytearray) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return body.decode(errors="replace")


class _Mix:
    """The weighted request mix, each request pre-encoded up to what varies per request (the
    body, and the traceparent when the request is traced)."""

    __slots__ = (
        "_cum",
        "_next",
        "_plain",
        "_rng",
        "_single",
        "_total",
        "_traced",
        "_with_body",
        "methods",
    )

    def __init__(self, mix: Sequence[HttpRequestSpec], rng: random.Random) -> None:
        self.methods = [(m.method, m.path) for m in mix]
        self._with_body = [m.method in BODY_METHODS for m in mix]
        self._cum = list(accumulate(m.weight for m in mix))
        self._total = self._cum[-1]
        self._single = len(mix) == 1
        self._rng = rng
        self._next = -1
        """The entry drawn ahead for the next request (:meth:`draw`); -1: none."""
        self._plain: list[bytes] = []
        """Per entry: the request without a traceparent (a ``%`` format of the body's length
        and the body for a method with a body, else the whole request)."""
        self._traced: list[bytes] = []
        """Per entry: the same with a ``traceparent`` header (its value is the first field)."""

    def set_headers(self, host: str, headers: Mapping[str, str]) -> None:
        """Raises ``ValueError`` for a header that would break the request's framing."""
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\x00") or ":" in name:
                raise ValueError(f"header {name!r} cannot be sent: it has a line break or NUL")
        block = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        plain: list[bytes] = []
        traced: list[bytes] = []
        for (method, path), with_body in zip(self.methods, self._with_body, strict=True):
            # Escaped: the head is part of a % format (a path or header may hold a %).
            raw = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{block}".encode()
            head = raw.replace(b"%", b"%%")
            tail = b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%b"
            if with_body:
                plain.append(head + tail)
                traced.append(head + b"traceparent: %b\r\n" + tail)
            else:
                plain.append(raw + b"\r\n")
                traced.append(head + b"traceparent: %b\r\n\r\n")
        self._plain, self._traced = plain, traced

    def draw(self) -> int:
        """The entry of the next :meth:`request`, drawn now if it was not yet."""
        i = self._next
        if i < 0:
            i = self._next = (
                0 if self._single else bisect(self._cum, self._rng.random() * self._total)
            )
        return i

    def request(self, data: str, traceparent: str | None) -> bytes:
        """One request of the mix (the one :meth:`draw` chose, if it was called); a method
        with a body carries ``data`` (the stamp)."""
        i = self._next
        if i < 0:
            i = 0 if self._single else bisect(self._cum, self._rng.random() * self._total)
        else:
            self._next = -1
        if self._with_body[i]:
            body = data.encode()
            if traceparent is None:
                return self._plain[i] % (len(body), body)
            return self._traced[i] % (traceparent.encode(), len(body), body)
        if traceparent is None:
            return self._plain[i]
        return self._traced[i] % traceparent.encode()


class _HttpConnection(asyncio.Protocol):
    """One keep-alive connection: an asyncio protocol feeding llhttp, and the session's
    :class:`~generators.engines.base.Connection`."""

    __slots__ = (
        "_answered",
        "_body",
        "_broken",
        "_bye",
        "_depth",
        "_handler",
        "_headers",
        "_host",
        "_in_body",
        "_inflight",
        "_lost",
        "_max_response",
        "_mix",
        "_open",
        "_parser",
        "_read",
        "_sized",
        "_transport",
        "_waiting",
        "_we_closed",
    )

    def __init__(
        self,
        mix: _Mix,
        host: str,
        headers: dict[str, str],
        depth: int,
        max_response: int = MAX_RESPONSE,
    ) -> None:
        self._handler: MessageHandler = _Silent()
        """Silent until the connect completes (a failed connect raises instead)."""
        self._mix = mix
        self._host = host
        self._headers = headers
        mix.set_headers(host, headers)
        self._depth = depth
        self._parser = HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._inflight: deque[int] = deque()
        """Seqs of the requests written and not yet answered, oldest first."""
        self._waiting: tuple[bytes, int] | None = None
        """A request queued while the connection was full; written when an answer frees room."""
        self._body: bytes | bytearray = b""
        """The answer's body so far: llhttp's one piece, or the pieces joined when it arrives in
        several reads."""
        self._open = False
        self._we_closed = False
        self._broken = False
        """The server broke the protocol; the connection was reported ended (:meth:`_fail`)."""
        self._max_response = max_response
        self._read = 0
        """Bytes read since the last complete response (about: what follows an answer in the
        same read is not counted), held against ``_max_response``."""
        self._in_body = False
        """The response being read has its head complete."""
        self._sized = False
        """The response being read declared its length (``content-length``, or chunked)."""
        self._bye = False
        """The server said ``Connection: close`` (or spoke HTTP/1.0): it ends after this answer."""
        self._answered: asyncio.Future[int] | None = None
        """While a connect request is out: its answer's status."""
        self._lost = asyncio.get_running_loop().create_future()

    # asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both write and close.
        self._transport = cast("asyncio.Transport", transport)
        self._open = True

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        read = self._read = self._read + len(data)
        if read > self._max_response:
            self._fail(f"a response longer than {self._max_response} bytes")
            return
        if read > MAX_HEAD and not self._in_body:
            self._fail(f"a response head longer than {MAX_HEAD} bytes")
            return
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail("the server switched protocols")
        except HttpParserError as exc:
            self._fail(f"malformed response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if exc is None and self._in_body and not (self._sized or self._we_closed or self._broken):
            # A body without a declared length ends with the connection (RFC 9112 6.3).
            self.on_message_complete()
        if not self._lost.done():
            self._lost.set_result(None)
        answered = self._answered
        if answered is not None and not answered.done():
            answered.set_exception(ConnectionLost("closed before the connect request's answer"))
        unwritten = () if self._waiting is None else (self._waiting[1],)
        self._waiting = None
        if self._we_closed:
            closed = Closed("client", None, "", unwritten=unwritten)
        elif exc is not None:
            closed = Closed("error", None, f"{type(exc).__name__}: {exc}", unwritten=unwritten)
        elif not self._inflight and not unwritten:
            # Ending a keep-alive connection between requests is the server's right (idle
            # timeout, Connection: close): nothing was lost.
            closed = Closed("server", None, "keep-alive connection closed by the server", True)
        else:
            why = "connection closed with answers outstanding"
            closed = Closed("server", None, why, unwritten=unwritten)
        self._handler.on_closed(closed)

    # httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only to know, should the server close within the body, whether that ends the body.
        if len(name) == 14 and name.lower() == b"content-length":
            self._sized = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._sized = value.rstrip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        part = self._body
        if not part:
            self._body = body
        elif isinstance(part, bytearray):
            part += body
        else:
            self._body = bytearray(part) + body

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body
        self._body = b""
        self._read = 0
        self._in_body = self._sized = False
        status = parser.get_status_code()
        if status < 200:
            return  # interim (100 Continue, 103 Early Hints): the answer is still to come
        if not parser.should_keep_alive():
            self._bye = True
        if not self._inflight:
            self._fail("an answer to no request")
            return
        seq = self._inflight.popleft()
        if seq == _CONNECT_SEQ:
            if self._answered is not None and not self._answered.done():
                self._answered.set_result(status)
        else:
            # The one place an answer is handed over, matched to its request's seq; the session
            # records it and ends the round trip's span (Session.on_message).
            self._handler.on_message(_text(body), status, seq)
        waiting = self._waiting
        if waiting is not None and self._open and not self._bye:
            self._waiting = None
            self._write(waiting[0], waiting[1])
        if self._bye and not self._inflight and self._transport is not None:
            # The server's wish (Connection: close), not the session's: reported as the
            # server's ending of the connection.
            self._transport.close()

    # Connection ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open and not self._bye

    @property
    def busy(self) -> bool:
        return len(self._inflight) >= self._depth and self._waiting is not None

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        if not self._open or self._bye:
            raise ConnectionLost("HTTP connection is closed")
        request = self._mix.request(data, traceparent)
        if len(self._inflight) < self._depth:
            self._write(request, seq)
        elif self._waiting is None:
            self._waiting = (request, seq)
        else:
            raise ConnectionLost("HTTP connection is full")

    def _write(self, request: bytes, seq: int) -> None:
        """The one place a request goes on the wire (its span was started by the session's
        send; the method and path are those of the mix entry ``_Mix.request`` drew)."""
        assert self._transport is not None
        self._inflight.append(seq)
        self._transport.write(request)

    def next_request(self) -> int:
        return self._mix.draw()

    def set_header(self, name: str, value: str) -> None:
        for key in [k for k in self._headers if k.lower() == name.lower()]:
            del self._headers[key]
        self._headers[name] = value
        try:
            self._mix.set_headers(self._host, self._headers)
        except ValueError as exc:
            self._fail(str(exc))

    def expire(self, seq: int) -> list[int]:
        waiting = self._waiting
        if waiting is not None and waiting[1] == seq:
            self._waiting = None
            return [seq]
        if seq not in self._inflight:
            return []
        self._waiting = None
        self._close_transport(abort=True)
        return [] if waiting is None else [waiting[1]]

    async def close(self, code: int = 1000) -> None:
        if self._transport is None:
            return
        self._close_transport(abort=False)
        await self._lost

    def _close_transport(self, *, abort: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._we_closed = True
        self._open = False
        if abort:
            self._transport.abort()
        else:
            self._transport.close()

    def _fail(self, why: str) -> None:
        """The server broke the protocol: end the connection as an error."""
        self._open = False
        self._broken = True
        self._body = b""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        if not self._lost.done():
            # Reported here, with why; connection_lost (which follows) reports nothing.
            unwritten = () if self._waiting is None else (self._waiting[1],)
            self._waiting = None
            self._handler.on_closed(Closed("error", None, why, unwritten=unwritten))
            self._handler = _Silent()

    # connect ---------------------------------------------------------------------------------

    async def request_connect(self, spec: RequestConnect, headers: Mapping[str, str]) -> int:
        """Send the connect request (with ``headers``) and wait for its answer's status."""
        assert self._transport is not None
        self._answered = asyncio.get_running_loop().create_future()
        block = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        length = "content-length: 0\r\n" if spec.method in BODY_METHODS else ""
        self._inflight.append(_CONNECT_SEQ)
        line = f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {self._host}\r\n"
        self._transport.write(f"{line}{block}{length}\r\n".encode())
        try:
            return await self._answered
        finally:
            self._answered = None

    def attach(self, handler: MessageHandler) -> None:
        """The connect is done: answers and the end of the connection go to ``handler``."""
        self._handler = handler


class _Silent:
    """The handler of a connection already reported as ended."""

    def on_message(self, data: str, status: int | None, seq: int | None) -> None:
        return None

    def on_closed(self, closed: Closed) -> None:
        return None


class HttpEngine:
    name = "http"
    protocol = WireProtocol.HTTP

    def __init__(
        self,
        mix: Sequence[HttpRequestSpec] = (),
        seed: int | None = None,
        options: HttpOptions | None = None,
        max_response_bytes: int = MAX_RESPONSE,
    ) -> None:
        self._mix = list(mix)
        self.max_response_bytes = max_response_bytes
        self._rng = random.Random(seed)
        self._options = options or HttpOptions()
        self._tls: ssl.SSLContext | None = None

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        opts = self._options
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        authority = f"{host}:{endpoint.port}"
        url = Endpoint(endpoint.host, endpoint.port, "", endpoint.secure).url(
            "https" if endpoint.secure else "http"
        )
        mix = self._mix or [HttpRequestSpec(name="echo", method="POST", path=endpoint.path)]
        own = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
        # The connect's trace context goes with the connect request only; each round trip
        # carries its own traceparent.
        connect_headers = dict(own)
        for name in ("traceparent", "tracestate"):
            own.pop(name, None)
        rng = random.Random(self._rng.random())
        if endpoint.secure and self._tls is None:
            self._tls = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            conn = _HttpConnection(
                _Mix(mix, rng), authority, own, opts.pipelining, self.max_response_bytes
            )
        except ValueError as exc:
            raise ConnectError(f"connect to {url}: {exc}") from exc
        try:
            async with asyncio.timeout(timeout_s):
                await loop.create_connection(
                    lambda: conn,
                    endpoint.host,
                    endpoint.port,
                    ssl=self._tls if endpoint.secure else None,
                )
                spec = opts.connect
                if isinstance(spec, RequestConnect):
                    status = await conn.request_connect(spec, connect_headers)
                    if spec.expect_status and status not in spec.expect_status:
                        await conn.close()
                        raise HandshakeError(
                            f"connect request {spec.method} {spec.path} to {url} was "
                            f"answered {status}, not one of {spec.expect_status}",
                            status,
                        )
        except TimeoutError as exc:
            conn._close_transport(abort=True)
            raise ConnectError(f"connect to {url} timed out") from exc
        except (OSError, ConnectionLost) as exc:
            conn._close_transport(abort=True)
            raise ConnectError(f"connect to {url} failed: {exc}") from exc
        conn.attach(handler)
        return conn
