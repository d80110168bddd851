"""A small HTTP/1.1 server on asyncio for the control API.

Keep-alive, pipelined requests answered in order, ``Content-Length`` and chunked bodies, a body
limit (413) and a header limit (431). Malformed requests get 400 and the connection closes;
nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
IDLE_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 30.0
_DISCARD_LIMIT = 64 * 1024 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None


class BadHttp(Exception):
    """The request cannot be parsed; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _go_plain_error(status: int, text: str) -> bytes:
    """What Go's server writes for requests it cannot parse."""
    reason = HTTPStatus(status).phrase
    body = f"{status} {reason}" if not text else f"{status} {reason}: {text}"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


_SETTLE_ITERATIONS = 10
"""Loop iterations from a socket's accept to its connection handler running, and then some."""


class HttpServer:
    def __init__(
        self,
        handler: Callable[[Request], Awaitable[Response]],
        too_large: Callable[[Request, int], Response],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._handler = handler
        self._too_large = too_large
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, backlog=1024
        )
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def aclose(self) -> None:
        server, self._server = self._server, None
        self._closing = True
        if server is not None:
            server.close()
        # A connection accepted just before close() reaches _serve a few loop iterations
        # later (accept, transport, protocol, task): let those run, so each sees _closing and
        # closes its own connection instead of serving on, unseen, after we are closed.
        for _ in range(_SETTLE_ITERATIONS):
            await asyncio.sleep(0)
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        self._writers.add(writer)
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("control API connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(_go_plain_error(431, ""))
                await writer.drain()
                return
            try:
                request_line, headers, version = _parse_head(head)
                async with asyncio.timeout(READ_TIMEOUT_S):
                    body = await self._read_body(reader, writer, headers)
            except BadHttp as exc:
                writer.write(_go_plain_error(exc.status, exc.message))
                await writer.drain()
                return
            except _TooLarge as exc:
                method, target = request_line
                path, _, query = target.partition("?")
                request = Request(method, path, query, version, headers, b"")
                response = self._too_large(request, exc.length)
                await self._write(writer, request, response, keep_alive=False)
                # Read (and drop) the body the client is still sending, so closing does not
                # reset the connection before the client reads the 413.
                with contextlib.suppress(TimeoutError, ConnectionError):
                    async with asyncio.timeout(2):
                        await _discard(reader, min(exc.length, _DISCARD_LIMIT))
                return
            method, target = request_line
            path, _, query = target.partition("?")
            request = Request(method, path, query, version, headers, body)
            try:
                response = await self._handler(request)
            except Exception:
                log.exception("control API handler failed on %s %s", method, path)
                response = Response(500, b"internal server error\n", content_type="text/plain")
            keep_alive = _keep_alive(request)
            await self._write(writer, request, response, keep_alive)
            if not keep_alive:
                return

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bytes:
        encoding = headers.get("transfer-encoding", "").strip().lower()
        length_text = headers.get("content-length")
        if encoding and encoding != "identity":
            if encoding != "chunked":
                raise BadHttp(501, "unsupported transfer encoding")
            self._continue(writer, headers)
            return await self._read_chunked(reader)
        if length_text is None:
            return b""
        length_text = length_text.strip()
        if not (length_text.isascii() and length_text.isdigit()):
            raise BadHttp(400, f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > self.max_body_bytes:
            raise _TooLarge(length)
        if length == 0:
            return b""
        self._continue(writer, headers)
        return await reader.readexactly(length)

    @staticmethod
    def _continue(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            # Hex digits only: int() would also take a sign, underscores or a 0x prefix.
            if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
                raise BadHttp(400, "bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers are ignored
                return bytes(body)
            if len(body) + size > self.max_body_bytes:
                raise _TooLarge(size)
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise BadHttp(400, "bad chunk terminator")

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        request: Request,
        response: Response,
        keep_alive: bool,
    ) -> None:
        reason = HTTPStatus(response.status).phrase
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        lines.extend(f"{k}: {v}" for k, v in response.headers)
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if response.status != 204 and response.status >= 200:
            lines.append(f"Content-Length: {len(response.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = b"" if request.method == "HEAD" or response.status == 204 else response.body
        writer.write(head + body)
        await writer.drain()


class _TooLarge(Exception):
    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _parse_head(head: bytes) -> tuple[tuple[str, str], dict[str, str], str]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadHttp(400, "") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadHttp(400, "malformed request line")
    method, target, version = parts
    if not method or not set(method) <= _TOKEN_CHARS:
        raise BadHttp(400, "invalid method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadHttp(505 if version.startswith("HTTP/") else 400, "unsupported protocol version")
    if not target.startswith("/"):
        if target.startswith(("http://", "https://")):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        else:
            raise BadHttp(400, "invalid request target")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise BadHttp(400, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise BadHttp(400, "conflicting Content-Length headers")
            headers[key] = f"{headers[key]}, {value}" if key != "content-length" else value
        else:
            headers[key] = value
    if "content-length" in headers and "transfer-encoding" in headers:
        raise BadHttp(400, "both Content-Length and Transfer-Encoding")
    return (method, target), headers, version


def _keep_alive(request: Request) -> bool:
    connection = request.header("connection").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


async def _discard(reader: asyncio.StreamReader, limit: int) -> None:
    seen = 0
    while seen < limit:
        chunk = await reader.read(65536)
        if not chunk:
            return
        seen += len(chunk)
