"""Fixtures for the fault proxy: a server in this loop, a server in a thread (for blocking
clients), a loopback echo server, and a raw HTTP helper that shows exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from injector.proxy import ProxyServer
from spine.eventlog import MemorySink
from tests.loopback import close_accepted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


async def raw_http(
    api_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """One request on a fresh connection; the response read byte for byte."""
    host, port = api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    return parse_response(data)


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    _, status, reason = status_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return RawResponse(int(status), reason, headers, body)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def server(sink: MemorySink) -> AsyncIterator[ProxyServer]:
    async with ProxyServer(sink=sink) as srv:
        yield srv


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await _echo(reader, writer)
        finally:
            writers.discard(writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await close_accepted(writers)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """A ProxyServer (and an echo server) on their own loop in a thread, for blocking clients."""

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.sink = MemorySink()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.api_url = ""
        self.echo_port = 0
        self.error: BaseException | None = None

    def _main(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
            self.echo_port = echo.sockets[0].getsockname()[1]
            async with ProxyServer(sink=self.sink, **self.kwargs) as srv:  # type: ignore[arg-type]
                self.server = srv
                self.api_url = srv.api_url
                self._ready.set()
                await self._stop.wait()
            echo.close()
        except BaseException as exc:  # pragma: no cover - surfaced by start()
            self.error = exc
            self._ready.set()

    def start(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return int(self.api_url.rsplit(":", 1)[1])


@pytest.fixture
def threaded_server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer().start()
    yield srv
    srv.stop()
