"""The message service's raw TCP target: newline-delimited echo on its own port."""

from __future__ import annotations

import asyncio

from examples.chat import ChatSystem
from examples.chat.message_service import ECHO_LINE_LIMIT


async def test_line_echo(redis_url: str) -> None:
    async with ChatSystem(redis_url) as chat:
        host, port = chat.tcp_echo_addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [b"one\n", b"\n", b"three with spaces\n", b"x" * 50_000 + b"\n"]
        writer.write(b"".join(lines))
        for line in lines:
            assert await reader.readline() == line
        writer.write(b"y" * (ECHO_LINE_LIMIT + 10) + b"\n")
        assert (await reader.readline()).startswith(b"error: line longer than")
        assert await reader.read() == b""  # and it hangs up
        writer.close()
        # The port keeps serving other connections.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"again\n")
        assert await reader.readline() == b"again\n"
        writer.close()


async def test_message_service_survives_garbage_on_the_link(redis_url: str) -> None:
    async with ChatSystem(redis_url) as chat:
        host, port = chat.message_addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        await reader.readexactly(4)  # hello frame header
        writer.write(b"\x00\x00\x00\x05nope!")  # well framed, not JSON
        writer.write(b'\x00\x00\x00\x0c{"t":"what"}')
        writer.write(b"\xff\xff\xff\xff")  # a frame far too large: the link is dropped
        data = await asyncio.wait_for(reader.read(), 5)
        assert b"bad_json" in data
        assert b"unknown_type" in data
        assert b"too_large" in data
        writer.close()
        assert chat.gateway is not None
        assert chat.gateway.healthy  # the gateway's own link is untouched
