"""Whatever a server writes back after a request, the HTTP engine ends in a matched answer or a
clear end of the connection (``Closed`` with a reason), once, without an exception reaching
the event loop and without hanging: any bytes against a real loopback server, cut across reads
anywhere; valid responses of every framing (a declared length, chunked, or the body ending
with the connection) are handed over whole; a response over the limit ends the connection."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import uvloop
from hypothesis import example, given, settings
from hypothesis import strategies as st

from generators.engines.base import Closed, Endpoint
from generators.engines.http import MAX_HEAD, MAX_RESPONSE, HttpEngine
from generators.errors import ConnectError
from schemas.load import HttpOptions, HttpRequestSpec, RequestConnect
from tests.generators.fakes import Answers
from tests.loopback import close_accepted, unread_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from generators.engines.base import Connection

REQUEST_BODY = "A1|stamp"
RUNNERS: dict[str, Callable[[Coroutine[Any, Any, Outcome]], Outcome]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


@dataclass
class Outcome:
    answers: Answers
    loop_errors: list[dict[str, Any]]
    connect_error: ConnectError | None = None
    ended_at_connect: bool = False
    """Connected, by an answer after which the server had closed the connection already."""


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            await reader.readexactly(int(value))


async def exchange(
    chunks: list[bytes],
    *,
    end: bool = True,
    options: HttpOptions | None = None,
    max_response: int = MAX_RESPONSE,
) -> Outcome:
    """One request on a new connection; the server reads it, writes ``chunks`` (each read by the
    client before the next leaves) and closes the connection if ``end``. Returns once the
    client's connection has ended (or its connect failed)."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    answers = Answers()
    conn: Connection | None = None
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await _read_request(reader)
            transport = writer.transport
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                # Until the client read it (or ended the connection): then the next piece.
                peer = conn._transport if conn is not None else None  # type: ignore[attr-defined]
                while peer is not None and not peer.is_closing() and unread_bytes(peer) > 0:
                    await asyncio.sleep(0)
                if transport.is_closing():
                    break
            if end:
                writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client ended it first

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = HttpEngine(
        [HttpRequestSpec(name="post", method="POST", path="/echo")],
        options=options,
        max_response_bytes=max_response,
    )
    try:
        async with asyncio.timeout(10):
            try:
                conn = await engine.connect(Endpoint("127.0.0.1", port), answers, {}, 5)
            except ConnectError as exc:
                return Outcome(answers, loop_errors, exc)
            if not conn.is_open:
                await conn.close()  # returns once the connection has ended
                return Outcome(answers, loop_errors, ended_at_connect=True)
            conn.send(REQUEST_BODY, 1)
            await answers.ended.wait()
        await conn.close()
    finally:
        server.close()
        await close_accepted(writers)
        await server.wait_closed()
    return Outcome(answers, loop_errors)


def _cuts(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a] or [b""]


token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)
header_value = st.text("abcdefghijklmnopqrstuvwxyz ABC0123456789;=/,.", max_size=20).map(str.strip)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, bytes, bool]:
    """A valid response to the request: (its bytes, status, body, whether bytes follow it)."""
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    reason = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ abc", max_size=12)).encode()
    headers = draw(st.lists(st.tuples(token.map("x-".__add__), header_value), max_size=4))
    framing = draw(
        st.sampled_from(
            ["length", "chunked", "close"] if version == b"1.1" else ["length", "close"]
        )
    )
    body = draw(st.binary(max_size=300))
    head = b"HTTP/%b %d %b\r\n" % (version, status, reason)
    if draw(st.booleans()):
        head = b"HTTP/1.1 100 Continue\r\n\r\n" + head  # an interim answer first
    head += b"".join(b"%b: %b\r\n" % (k.encode(), v.encode()) for k, v in headers)
    if version == b"1.1" and draw(st.booleans()):
        head += b"Connection: close\r\n"
    if framing == "length":
        data = head + b"content-length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        sizes = draw(st.lists(st.integers(1, 64), max_size=8))
        parts, i = [], 0
        for n in sizes:
            if i < len(body):
                parts.append(body[i : i + n])
                i += n
        if i < len(body):
            parts.append(body[i:])
        chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts)
        data = head + b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        data = head + b"\r\n" + body  # the body ends when the server closes
    trailing = draw(st.binary(max_size=40)) if framing != "close" else b""
    return data + trailing, status, body, bool(trailing)


def _changed(data: bytes, at: int, how: int, byte: int) -> bytes:
    i = at % (len(data) + 1)
    if how == 0:
        return data[:i] + data[i + 1 :]
    if how == 1:
        return data[:i] + bytes([byte]) + data[i:]
    return data[:i]  # cut short


garbled = st.one_of(
    st.binary(max_size=200),
    st.builds(
        _changed,
        responses().map(lambda r: r[0]),
        st.integers(min_value=0),
        st.integers(0, 2),
        st.integers(0, 255),
    ),
)


def _check_ended_once(outcome: Outcome) -> Closed:
    assert outcome.loop_errors == []
    (closed,) = outcome.answers.closed
    assert closed.by in ("server", "error")
    assert closed.reason
    return closed


@pytest.mark.parametrize("loop", sorted(RUNNERS))
@settings(max_examples=50, deadline=None)
@given(response=responses(), points=st.lists(st.integers(min_value=0), max_size=6))
@example(response=(b"HTTP/1.0 200 OK\r\n\r\nbody", 200, b"body", False), points=[])
@example(response=(b"HTTP/1.1 201 OK\r\n\r\n", 201, b"", False), points=[])
def test_a_valid_response_in_any_framing_is_the_answer(
    loop: str, response: tuple[bytes, int, bytes, bool], points: list[int]
) -> None:
    data, status, body, trailing = response
    outcome = RUNNERS[loop](exchange(_cuts(data, points)))
    assert outcome.answers.messages == [(body.decode(errors="replace"), status, 1)]
    closed = _check_ended_once(outcome)
    if not trailing:
        assert closed.idle  # the server closed with nothing outstanding: no failure


@pytest.mark.parametrize("loop", sorted(RUNNERS))
@settings(max_examples=60, deadline=None)
@given(data=garbled, points=st.lists(st.integers(min_value=0), max_size=6))
@example(data=b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort", points=[])
@example(data=b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", points=[])
@example(data=b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", points=[])
@example(data=b"", points=[])
def test_any_bytes_end_in_an_answer_or_a_clear_end(
    loop: str, data: bytes, points: list[int]
) -> None:
    outcome = RUNNERS[loop](exchange(_cuts(data, points)))
    closed = _check_ended_once(outcome)
    messages = outcome.answers.messages
    assert len(messages) <= 1
    if messages:
        ((_, status, seq),) = messages
        assert seq == 1
        assert status is not None
        assert 200 <= status <= 999
    else:
        assert not closed.idle  # the request went unanswered: never taken for a quiet close


@settings(max_examples=30, deadline=None)
@given(data=garbled | responses().map(lambda r: r[0]))
def test_a_connect_request_ends_connected_or_in_a_connect_error(data: bytes) -> None:
    connect = RequestConnect(method="GET", path="/", expect_status=[200])
    outcome = asyncio.run(exchange([data], options=HttpOptions(connect=connect)))
    assert outcome.loop_errors == []
    if outcome.connect_error is not None:
        assert str(outcome.connect_error)
    elif outcome.ended_at_connect:
        # Told or not (the session sees it is not open), never more than once.
        assert len(outcome.answers.closed) <= 1
    else:
        _check_ended_once(outcome)  # connected on a 200; then the request, then the end


BODY_OVER = f"longer than {MAX_RESPONSE}"
HEAD_OVER = f"head longer than {MAX_HEAD}"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n", BODY_OVER),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffff\r\n", BODY_OVER),
        (b"HTTP/1.1 200 OK\r\n\r\n", BODY_OVER),
        (b"HTTP/1.1 200 OK\r\nx-endless: ", HEAD_OVER),
        (b"HTTP/1.1 200 OK\r\n" + b"x-many: 1\r\n" * 10_000, HEAD_OVER),
    ],
)
async def test_a_response_over_the_limit_ends_a_connection_the_server_keeps_open(
    head: bytes, why: str
) -> None:
    """The server goes on sending one response (a body, a header) and never ends it: the
    client ends the connection itself once the response (or its head) passes the limit, saying
    why."""
    filler = b"y" * 65536
    outcome = await exchange([head, *[filler] * (MAX_RESPONSE // len(filler) + 2)], end=False)
    assert outcome.answers.messages == []
    closed = _check_ended_once(outcome)
    assert closed.by == "error"
    assert closed.reason == f"a response {why} bytes"
