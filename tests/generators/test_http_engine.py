"""The HTTP engine against a real HTTP/1.1 server on loopback: keep-alive, answers matched to
their requests in order, pipelining only when asked, timeouts from the ticker, the connect step
the profile chooses, and a generator that falls behind saying so instead of blaming the
server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
import uvloop

from analyzers.core import Analyzer
from generators.engines.base import Endpoint
from generators.engines.http import HttpEngine
from generators.runner import Generator, GeneratorOptions
from schemas.events import Disconnect, Receive, Send, SendSkipped, SessionError
from schemas.load import HttpOptions, HttpRequestSpec
from schemas.results import Integrity
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import Answers
from tests.generators.servers import ChatLikeServer, HttpEcho

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from generators.stats import GeneratorStats


@pytest.fixture
def http_echo() -> Iterator[HttpEcho]:
    with HttpEcho() as server:
        yield server


async def _two_answered(engine: HttpEngine, endpoint: Endpoint, handler: Answers) -> None:
    """Two requests on one connection, until both are answered."""
    conn = await engine.connect(endpoint, handler, {}, 10)
    try:
        conn.send("", 1)
        conn.send("", 2)
        await handler.wait_for(2)
    finally:
        await conn.close()


def _http(server: HttpEcho, **over: Any) -> tuple[Any, Target]:
    data: dict[str, Any] = {
        "target": "api",
        "tenants": [{"name": "acme", "users": 2}],
        "script": [
            {"do": "connect"},
            {"do": "send", "count": 10, "rate_per_s": 50, "expect": "response"},
        ],
        "http_mix": [{"name": "echo", "method": "POST", "path": "/echo"}],
    }
    data.update(over)
    return profile(**data), Target(name="api", upstream=server.address, protocol="http")


async def _run(
    server: HttpEcho, provider: TracerProvider | None = None, **over: Any
) -> tuple[MemorySink, GeneratorStats]:
    prof, target = _http(server, **over)
    sink = MemorySink()
    opts = GeneratorOptions(experiment_id="e", trace_every=0)
    gen = Generator(prof, target, sink, opts, tracer_provider=provider)
    stats = await asyncio.wait_for(gen.run(), 60)
    return sink, stats


def _errors(sink: MemorySink) -> list[tuple[str, str, int | None]]:
    return [(e.error_class, e.phase, e.seq) for e in sink.events if isinstance(e, SessionError)]


async def test_each_session_keeps_one_connection_alive_for_all_its_requests(
    http_echo: HttpEcho,
) -> None:
    sink, stats = await _run(http_echo)
    assert http_echo.connections == 2
    assert len(http_echo.requests) == 20
    per_connection = Counter(r.connection for r in http_echo.requests)
    assert sorted(per_connection.values()) == [10, 10]
    # the default connect step sends nothing: every request is a POST of the mix
    assert {(r.method, r.path) for r in http_echo.requests} == {("POST", "/echo")}
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert len(recv) == 20
    assert stats.round_trips == 20
    assert all(e.status == 200 and e.checksum_ok and e.origin_seq == e.seq for e in recv)
    assert stats.errors == 0
    assert stats.timeouts == 0


@pytest.mark.parametrize("at", [0, 2, 40])
async def test_every_answer_the_server_corrupted_is_counted_corrupt(
    http_echo: HttpEcho, at: int
) -> None:
    """Ground truth is the server's count of bodies it changed, at the stamp's first byte,
    its first separator or inside it; the receipts, the generator's counter and the fold's
    integrity figure all count exactly those."""
    http_echo.corrupt_at = at
    sink, stats = await _run(http_echo)
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert http_echo.corrupted == len(recv) == 20
    assert all(e.checksum_ok is False and e.status == 200 for e in recv)
    assert stats.checksum_failures == 20
    analyzer = Analyzer("e")
    analyzer.ingest(sink.events)
    analyzer.finish()
    (overall,) = [
        r for r in analyzer.results() if isinstance(r, Integrity) and r.scope == "overall"
    ]
    assert (overall.sent, overall.received, overall.corrupted) == (20, 20, 20)


async def test_answers_are_matched_to_requests_in_order_with_pipelining(
    http_echo: HttpEcho,
) -> None:
    handler = Answers()
    engine = HttpEngine(
        [HttpRequestSpec(name="echo", method="POST", path="/echo")],
        options=HttpOptions(pipelining=3),
    )
    conn = await engine.connect(Endpoint.parse(http_echo.address), handler, {}, 10)
    try:
        for seq, body in enumerate(("alpha", "bravo", "charlie"), start=1):
            assert not conn.busy
            conn.send(body, seq)
        # three in flight, none answered yet: a fourth waits for room, a fifth would not
        assert not conn.busy
        conn.send("delta", 4)
        assert conn.busy
        await handler.wait_for(4)
    finally:
        await conn.close()
    assert handler.messages == [
        ("alpha", 200, 1),
        ("bravo", 200, 2),
        ("charlie", 200, 3),
        ("delta", 200, 4),
    ]
    assert http_echo.connections == 1
    assert [r.body for r in http_echo.requests] == [b"alpha", b"bravo", b"charlie", b"delta"]


async def test_without_pipelining_one_request_is_in_flight_and_one_waits(
    http_echo: HttpEcho,
) -> None:
    handler = Answers()
    engine = HttpEngine([HttpRequestSpec(name="get", method="GET", path="/status/404")])
    conn = await engine.connect(Endpoint.parse(http_echo.address), handler, {}, 10)
    try:
        conn.send("ignored", 7)
        assert not conn.busy  # in flight; the next one may wait
        conn.send("ignored", 8)
        assert conn.busy
        await handler.wait_for(2)
        assert not conn.busy
    finally:
        await conn.close()
    assert handler.messages == [("/status/404", 404, 7), ("/status/404", 404, 8)]
    assert [(r.method, r.body) for r in http_echo.requests] == [("GET", b""), ("GET", b"")]


async def test_a_server_closing_after_each_answer_costs_a_reconnect_not_an_error(
    http_echo: HttpEcho,
) -> None:
    sink, stats = await _run(
        http_echo,
        tenants=[{"name": "acme", "users": 1}],
        reconnect={"initial_ms": 10, "jitter": 0},
        http_mix=[{"name": "bye", "method": "GET", "path": "/close"}],
        script=[
            {"do": "connect"},
            {"do": "send", "count": 3, "rate_per_s": 5, "expect": "response"},
        ],
    )
    assert stats.round_trips == 3
    assert stats.errors == 0
    assert http_echo.connections == 3
    by_server = [e for e in sink.events if isinstance(e, Disconnect) and e.by == "server"]
    assert len(by_server) == 3  # each answer said Connection: close
    assert all(e.code is None for e in by_server)


async def test_an_interim_answer_is_not_taken_for_the_answer(http_echo: HttpEcho) -> None:
    handler = Answers()
    engine = HttpEngine([HttpRequestSpec(name="get", method="GET", path="/early")])
    await _two_answered(engine, Endpoint.parse(http_echo.address), handler)
    assert handler.messages == [("/early", 200, 1), ("/early", 200, 2)]


async def test_an_unanswered_request_times_out_once_and_the_one_behind_it_is_not_sent(
    http_echo: HttpEcho,
) -> None:
    http_echo.hang = {3}
    sink, stats = await _run(
        http_echo,
        tenants=[{"name": "acme", "users": 1}],
        reconnect={"initial_ms": 20, "jitter": 0},
        script=[
            {"do": "connect"},
            {"do": "send", "count": 6, "rate_per_s": 20, "timeout_ms": 300, "expect": "response"},
        ],
    )
    errors = _errors(sink)
    # seq 3 was written and never answered: the system's timeout. Seq 4 waited behind it and
    # never left: recorded as not sent, never as a timeout.
    assert [e for e in errors if e[0] == "Timeout"] == [("Timeout", "receive", 3)]
    assert [e for e in errors if e[0] == "NotSent"] == [("NotSent", "send", 4)]
    assert len(errors) == 2
    assert stats.timeouts == 1
    recv = sorted(e.seq for e in sink.events if isinstance(e, Receive) and e.seq is not None)
    assert recv == [1, 2, 5, 6]
    assert [e.seq for e in sink.events if isinstance(e, Send)] == [1, 2, 3, 4, 5, 6]
    # the timed-out connection was closed and a new one opened for seqs 5 and 6
    assert http_echo.connections == 2
    assert [r.connection for r in http_echo.requests] == [1, 1, 1, 2, 2]
    # while seq 3 was out and seq 4 waited, the sends due were skipped as busy, and said so
    busy = [e for e in sink.events if isinstance(e, SendSkipped)]
    assert busy
    assert {e.reason for e in busy} == {"busy"}
    assert stats.skipped_busy == sum(e.count for e in busy)
    assert not stats.fell_behind


async def test_connect_step_sends_the_configured_request_with_the_session_headers(
    http_echo: HttpEcho,
    chat: ChatLikeServer,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _sink, stats = await _run(
        http_echo,
        spans[0],
        tenants=[{"name": "acme", "users": 1}],
        auth={"base_url": chat.base_url},
        http={"connect": {"mode": "request", "method": "GET", "path": "/health?deep=1"}},
        script=[{"do": "connect"}, {"do": "send", "count": 2, "expect": "response"}],
    )
    first, *rest = http_echo.requests
    assert (first.method, first.path, first.body) == ("GET", "/health?deep=1", b"")
    connect_span = next(s for s in spans[1].get_finished_spans() if s.name == "connect")
    ctx = connect_span.get_span_context()
    assert first.headers["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert [(r.method, r.path) for r in rest] == [("POST", "/echo")] * 2
    assert all("traceparent" not in r.headers for r in rest)  # trace_every=0
    # the session's token goes with every request, the connect request included
    assert {r.headers["Authorization"] for r in http_echo.requests} == {"Bearer a1"}
    assert http_echo.connections == 1
    assert stats.connects == 1
    assert stats.round_trips == 2
    assert stats.errors == 0


async def test_a_tcp_connect_step_sends_no_request(http_echo: HttpEcho) -> None:
    _, stats = await _run(
        http_echo,
        tenants=[{"name": "acme", "users": 1}],
        script=[{"do": "connect"}, {"do": "disconnect"}],
    )
    assert stats.connects == 1
    async with asyncio.timeout(10):
        while http_echo.connections < 1:
            await asyncio.sleep(0.01)
    assert http_echo.requests == []


async def test_a_connect_request_answered_with_an_unexpected_status_fails_the_connect(
    http_echo: HttpEcho,
) -> None:
    sink, stats = await _run(
        http_echo,
        tenants=[{"name": "acme", "users": 1}],
        reconnect={"max_attempts": 1},
        http={"connect": {"mode": "request", "path": "/status/503", "expect_status": [200]}},
    )
    assert stats.connects == 0
    assert stats.connect_failures == 1
    [(cls, phase, _)] = _errors(sink)
    assert (cls, phase) == ("HandshakeError", "connect")
    assert [(r.method, r.path) for r in http_echo.requests] == [("GET", "/status/503")]


async def _stalled(http_echo: HttpEcho) -> tuple[MemorySink, GeneratorStats]:
    http_echo.delay_s = 0.1  # each session has a request in flight half of the time
    prof, target = _http(
        http_echo,
        tenants=[{"name": "acme", "users": 4}],
        duration_s=3.5,
        script=[
            {"do": "connect"},
            {"do": "send", "rate_per_s": 5, "timeout_ms": 800, "expect": "response"},
        ],
    )
    sink = MemorySink()
    gen = Generator(prof, target, sink, GeneratorOptions(experiment_id="e", trace_every=0))
    loop = asyncio.get_running_loop()
    staller = await loop.create_server(_Staller, "127.0.0.1", 0)
    _, poke = await asyncio.open_connection("127.0.0.1", staller.sockets[0].getsockname()[1])
    try:
        run = asyncio.create_task(gen.run())
        async with asyncio.timeout(20):
            while gen.counters.receives < 8:
                await asyncio.sleep(0.01)
        poke.write(b"x")
        stats = await asyncio.wait_for(run, 60)
    finally:
        poke.close()
        staller.close()
        await staller.wait_closed()
    return sink, stats


class _Staller(asyncio.Protocol):
    """Other work of the loop that takes 1.5 s, run where the loop reads sockets."""

    def data_received(self, data: bytes) -> None:
        time.sleep(1.5)


def test_a_generator_that_falls_behind_records_it_and_blames_no_timeout_on_the_server(
    http_echo: HttpEcho,
) -> None:
    """The event loop is stuck for 1.5 s (what an overloaded generator does to itself) while
    the server, in its own threads, answers (in 100 ms) on time. Answers wait unread in the
    kernel; sends fall due and cannot be made. No timeout (800 ms) may be recorded; lateness
    and the sends missed must be.

    On uvloop, as ``aftershock generate`` runs, and stuck while handling a socket: the next
    pass of its loop runs due timers (the ticker's timeouts) before it reads the sockets, where
    the answers wait."""
    sink, stats = uvloop.run(_stalled(http_echo))
    assert stats.timeouts == 0
    assert [e for e in _errors(sink) if e[0] == "Timeout"] == []
    assert stats.errors == 0
    behind = [e for e in sink.events if isinstance(e, SendSkipped) and e.reason == "behind"]
    # (a busy machine may make a send late by more than the threshold at other times too)
    late = [e for e in sink.events if isinstance(e, Send) and (e.late_ms or 0) >= 1000]
    # each session: the send due first in the stall left late, the rest of the stall skipped
    sessions = {f"acme-u{i}-s0" for i in range(4)}
    assert {e.session for e in behind} == {e.session for e in late} == sessions
    assert stats.skipped_behind == sum(e.count for e in behind)
    assert stats.late_sends == sum(1 for e in sink.events if isinstance(e, Send) and e.late_ms)
    assert stats.max_late_ms == max(e.late_ms or 0 for e in late)
    for session in sessions:
        # 1.5 s at 5/s: 7.5 sends fell due in the stall
        missed = sum(e.count for e in behind if e.session == session)
        lates = sum(1 for e in late if e.session == session)
        assert 7 <= missed + lates <= 8
    assert stats.fell_behind
    assert "GENERATOR BEHIND" in stats.line()
    # every request that was sent was answered
    sent = {(e.session, e.seq) for e in sink.events if isinstance(e, Send)}
    answered = {(e.session, e.seq) for e in sink.events if isinstance(e, Receive)}
    assert sent == answered


async def test_an_answer_in_several_pieces_is_handed_over_whole() -> None:
    """A chunked answer reaches the parser as one piece per chunk: the session gets the body
    joined, once, matched to its request."""
    chunks = [b"A1|first", b"|second|", b"x" * 3000, b"|\xc3\xa9nd"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for chunk in chunks:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    handler = Answers()
    engine = HttpEngine([HttpRequestSpec(name="get", method="GET", path="/")])
    try:
        await _two_answered(engine, Endpoint("127.0.0.1", port), handler)
    finally:
        server.close()
        await server.wait_closed()
    whole = b"".join(chunks).decode()
    assert handler.messages == [(whole, 200, 1), (whole, 200, 2)]


async def test_each_mix_entry_sends_its_own_body_size(http_echo: HttpEcho) -> None:
    """A mix entry's ``body_size`` sizes the body of the requests drawn from it; an entry
    without one takes the send step's ``size``; a method without a body sends none."""
    sink, stats = await _run(
        http_echo,
        script=[
            {"do": "connect"},
            {
                "do": "send",
                "count": 30,
                "rate_per_s": 100,
                "expect": "response",
                "size": {"dist": "fixed", "bytes": 150},
            },
        ],
        http_mix=[
            {"name": "a", "method": "POST", "path": "/a", "body_size": _fixed(300)},
            {"name": "b", "method": "PUT", "path": "/b", "body_size": _fixed(1200)},
            {"name": "c", "method": "POST", "path": "/c"},
            {"name": "d", "method": "GET", "path": "/d", "body_size": _fixed(9)},
        ],
    )  # fmt: skip
    assert stats.errors == 0
    lengths: dict[str, set[int]] = {}
    for r in http_echo.requests:
        lengths.setdefault(r.path, set()).add(len(r.body))
    assert lengths == {"/a": {300}, "/b": {1200}, "/c": {150}, "/d": {0}}
    # The session's record of each send: the stamp's size (a GET's stamp is not sent).
    sent = [e.bytes for e in sink.events if isinstance(e, Send)]
    assert len(sent) == len(http_echo.requests) == 60
    assert {300, 1200, 150} <= set(sent)


def _fixed(n: int) -> dict[str, Any]:
    return {"dist": "fixed", "bytes": n}
