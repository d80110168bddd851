"""Closing the control API leaves no connection open, even one accepted just before the close
whose handler only starts afterwards (asyncio runs it a few loop iterations after the accept)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from injector.proxy.http import HttpServer, Request, Response


async def _never(_request: Request) -> Response:
    raise AssertionError("a closed server answered")


def _too_large(_request: Request, _limit: int) -> Response:
    raise AssertionError("unexpected")


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """The peer closed: end of stream, or a reset (it closed with our request unread)."""
    try:
        async with asyncio.timeout(30):
            return await reader.read() == b""
    except ConnectionResetError:
        return True


async def test_a_handler_starting_after_the_close_closes_its_connection() -> None:
    server = HttpServer(_never, _too_large)
    await server.start("127.0.0.1", 0)
    await server.aclose()
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=ours)
    client_reader, client_writer = await asyncio.open_connection(sock=theirs)
    try:
        # What asyncio does with a connection accepted before the close: run the handler.
        handler = asyncio.create_task(server._serve(server_reader, server_writer))
        client_writer.write(b"GET /proxies HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _closed_by_peer(client_reader)  # nothing served
        await handler
    finally:
        client_writer.close()
        with contextlib.suppress(ConnectionError):
            await client_writer.wait_closed()


async def test_closing_closes_the_open_connections() -> None:
    server = HttpServer(_never, _too_large)
    host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /proxies HTTP/1.1\r\nHost: x\r\n")  # an unfinished request
        await writer.drain()
        await server.aclose()  # right away: its handler may not have started yet
        assert await _closed_by_peer(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
