"""Raw TCP framing against a real loopback server: any bytes, split across reads anywhere, give
exactly the frames a reference splitter finds; a frame over the limit ends the connection as an
error saying so (also when the server keeps the connection open), and an end of stream within a
frame says what was left unread."""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import TYPE_CHECKING, Any

import pytest
import uvloop
from hypothesis import example, given, settings
from hypothesis import strategies as st

from generators.engines.base import Closed, Endpoint
from generators.engines.tcp import MAX_FRAME, Framing, TcpEngine
from tests.loopback import close_accepted, unread_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from generators.engines.base import Connection

LIMIT = 40
"""The frame limit of the property tests: small, so frames over it are common."""
RUNNERS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


def reference(framing: Framing, stream: bytes, limit: int) -> tuple[list[str], Closed]:
    """The frames in ``stream`` and how the connection ends once the server closes it."""
    frames: list[str] = []
    if framing == "line":
        *lines, rest = stream.split(b"\n")
        for line in lines:
            if len(line) > limit:
                return frames, _broken(f"a line longer than {limit} bytes")
            frames.append(line.decode(errors="replace"))
        if len(rest) > limit:
            return frames, _broken(f"a line longer than {limit} bytes")
        return frames, _eof(len(rest))
    i = 0
    while len(stream) - i >= 4:
        (n,) = struct.unpack_from(">I", stream, i)
        if n > limit:
            return frames, _broken(f"a length prefix of {n} bytes, over the limit of {limit}")
        if len(stream) - i - 4 < n:
            break
        frames.append(stream[i + 4 : i + 4 + n].decode(errors="replace"))
        i += 4 + n
    return frames, _eof(len(stream) - i)


def _broken(why: str) -> Closed:
    return Closed("error", None, f"framing broken by the server: {why}")


def _eof(unread: int) -> Closed:
    return Closed(
        "server", None, f"EOF within a frame ({unread} bytes unread)" if unread else "EOF"
    )


class Frames:
    """A MessageHandler keeping what arrived, and how the connection ended."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: list[Closed] = []
        self.ended = asyncio.Event()

    def on_message(self, data: str, status: int | None, seq: int | None) -> None:
        assert (status, seq) == (None, None)
        self.frames.append(data)

    def on_closed(self, closed: Closed) -> None:
        self.closed.append(closed)
        self.ended.set()


async def exchange(
    framing: Framing, chunks: list[bytes], limit: int, *, end: bool = True
) -> Frames:
    """The server writes ``chunks``, each read by the client before the next leaves (so the
    client's reads are exactly these pieces), then closes the connection if ``end``; returns
    once the client's connection has ended."""
    handler = Frames()
    connected = asyncio.Event()
    conn: Connection | None = None
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        await connected.wait()
        assert conn is not None
        try:
            for chunk in chunks:
                if not conn.is_open:
                    break
                writer.write(chunk)
                await writer.drain()
                while conn.is_open and unread_bytes(conn._transport) > 0:  # type: ignore[attr-defined]
                    await asyncio.sleep(0)  # one loop turn: the client reads
            if end:
                writer.close()
        except ConnectionError:
            pass  # the client ended it first

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        engine = TcpEngine(framing, max_frame_bytes=limit)
        conn = await engine.connect(Endpoint("127.0.0.1", port), handler, {}, 5)
        connected.set()
        async with asyncio.timeout(10):
            await handler.ended.wait()
        await conn.close()
    finally:
        server.close()
        await close_accepted(writers)
        await server.wait_closed()
    return handler


def _cuts(stream: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _prefixed(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


piece = st.binary(max_size=LIMIT + 8) | st.text(max_size=LIMIT // 2).map(str.encode)
line_streams = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.lists(piece, max_size=8), piece).map(lambda t: b"\n".join([*t[0], t[1]])),
)
prefixed_streams = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.lists(piece, max_size=8), st.binary(max_size=12)).map(
        lambda t: _prefixed(t[0]) + t[1]
    ),
)


@pytest.mark.parametrize("loop", sorted(RUNNERS))
@settings(max_examples=60, deadline=None)
@given(
    framing_stream=st.one_of(
        st.tuples(st.just("line"), line_streams),
        st.tuples(st.just("length_prefixed"), prefixed_streams),
    ),
    points=st.lists(st.integers(min_value=0), max_size=12),
)
@example(framing_stream=("line", b"a\nb\r\n\xff\xfe\nunfinished"), points=[1, 2, 3, 7])
@example(framing_stream=("line", b"ok\n" + b"x" * (LIMIT + 1) + b"\nnever"), points=[5])
@example(
    framing_stream=("length_prefixed", _prefixed([b"a", b"", b"bc"]) + b"\x00\x00"), points=[2]
)
@example(framing_stream=("length_prefixed", _prefixed([b"ok"]) + b"\xff\xff\xff\xff"), points=[])
def test_any_bytes_split_anywhere_give_the_reference_frames(
    loop: str, framing_stream: tuple[Framing, bytes], points: list[int]
) -> None:
    framing, stream = framing_stream
    got = RUNNERS[loop](exchange(framing, _cuts(stream, points), LIMIT))
    frames, closed = reference(framing, stream, LIMIT)
    assert got.frames == frames
    assert got.closed == [closed]


@pytest.mark.parametrize(
    ("framing", "head"),
    [("line", b"ok\n" + b"y" * MAX_FRAME + b"z"), ("length_prefixed", b"\x01\x00\x00\x01")],
)
async def test_a_frame_over_the_limit_ends_a_connection_the_server_keeps_open(
    framing: Framing, head: bytes
) -> None:
    """The server sends the start of a frame longer than the default limit and waits: the client
    ends the connection itself, saying why, instead of buffering without end."""
    got = await exchange(framing, [head], MAX_FRAME, end=False)
    assert got.frames == (["ok"] if framing == "line" else [])
    (closed,) = got.closed
    assert closed.by == "error"
    assert closed.reason.startswith("framing broken by the server: ")
    assert str(MAX_FRAME) in closed.reason
