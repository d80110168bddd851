"""Sessions over real sockets: every event kind with correct fields, validated against the schema;
traces and traceparent; stamps catching forced cross-tenant delivery and corruption; reconnects."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult

from aftershock.gameday.run import session_tags
from analyzers.core import Analyzer
from generators.runner import Generator, GeneratorOptions
from schemas.events import (
    Connected,
    ConnectStart,
    Disconnect,
    Receive,
    Send,
    SessionError,
    parse_event,
)
from schemas.results import Integrity, IsolationGroup
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile

if TYPE_CHECKING:
    from tests.generators.servers import ChatLikeServer, TcpEcho


def ws_target(server: ChatLikeServer) -> Target:
    return Target(name="gw", upstream=server.address, protocol="ws", path="/ws")


@pytest.mark.parametrize("engine", ["ws", "picows"])
async def test_chat_script_records_every_step_with_valid_events(
    chat: ChatLikeServer, engine: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    sink = MemorySink()
    prof = profile(auth={"base_url": chat.base_url})
    gen = Generator(
        prof,
        ws_target(chat),
        sink,
        GeneratorOptions(experiment_id="exp-1", generator_id="g1", engine=engine),
        tracer_provider=provider,
    )
    stats = await gen.run()

    kinds = Counter(e.kind for e in sink.events)
    # 4 sessions: 3 broadcasts + 2 echoes each; each broadcast reaches both sessions of a tenant.
    assert kinds["session.connect_start"] == 4
    assert kinds["session.connected"] == 4
    assert kinds["session.send"] == 20
    assert kinds["session.receive"] == 4 * 3 * 2 + 4 * 2
    assert kinds["session.disconnect"] == 4
    assert stats.errors == 0
    assert stats.cross_tenant == 0
    # Every emitted event validates against the schema after a JSON round trip.
    for e in sink.events:
        assert parse_event(e.model_dump_json()) == e

    sends = [e for e in sink.events if isinstance(e, Send)]
    assert {(e.experiment_id, e.generator_id, e.target, e.protocol) for e in sends} == {
        ("exp-1", "g1", "gw", "ws")
    }
    assert sorted(e.seq for e in sends if e.session == "acme-u0-s0") == [1, 2, 3, 4, 5]
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert all(e.checksum_ok for e in recv)
    assert all(e.origin_tenant == e.tenant for e in recv)
    own = [e for e in recv if e.origin_session == e.session]
    assert len(own) == 20
    assert all(e.latency_ms is not None and e.latency_ms >= 0 for e in own)
    others = [e for e in recv if e.origin_session != e.session]
    assert len(others) == 12
    assert all(e.channel == "general" for e in others)

    # Each session is one trace; events carry its ids; the handshake carried traceparent.
    for e in sink.events:
        assert e.trace_id is not None
        assert e.span_id is not None
    per_session = {}
    for e in sink.events:
        if e.tenant == e.tenant and isinstance(e, ConnectStart | Connected | Disconnect):
            per_session.setdefault(e.session, set()).add(e.trace_id)
    assert all(len(ids) == 1 for ids in per_session.values())
    assert len({next(iter(v)) for v in per_session.values()}) == 4
    names = Counter(s.name for s in exporter.get_finished_spans())
    assert names["session"] == 4
    assert names["connect"] == 4
    assert names["round_trip"] == 20
    parents = [h.get("traceparent", "") for h in chat.calls.ws_headers]
    assert len(parents) == 4
    trace_ids = {e.trace_id for e in sink.events}
    assert {p.split("-")[1] for p in parents} == trace_ids
    assert all(h.get("Authorization", "").startswith("Bearer ") for h in chat.calls.ws_headers)
    # auth: one login per user, logout at the end
    assert sorted(u for u, _ in chat.calls.logins) == [
        "acme-u0",
        "acme-u1",
        "globex-u0",
        "globex-u1",
    ]
    assert sorted(chat.calls.logouts) == sorted(u for u, _ in chat.calls.logins)


async def test_forced_cross_tenant_delivery_is_detected(chat: ChatLikeServer) -> None:
    chat.leak_to = "globex"  # every acme publish also reaches globex sessions
    sink = MemorySink()
    prof = profile(auth={"base_url": chat.base_url})
    gen = Generator(prof, ws_target(chat), sink, GeneratorOptions(experiment_id="e"))
    stats = await gen.run()
    leaked = [
        e
        for e in sink.events
        if isinstance(e, Receive) and e.origin_tenant is not None and e.origin_tenant != e.tenant
    ]
    assert leaked
    assert {(e.tenant, e.origin_tenant) for e in leaked} == {("globex", "acme")}
    assert all(e.checksum_ok for e in leaked)
    assert stats.cross_tenant == len(leaked)


@pytest.mark.parametrize("at", [0, 2, 10], ids=["version", "separator", "name"])
async def test_forced_corruption_is_detected(chat: ChatLikeServer, at: int) -> None:
    """Wherever the change falls, the version prefix included (a damaged prefix once read as
    an echo carrying no stamp, and went uncounted)."""
    chat.corrupt_echo = True
    chat.corrupt_at = at
    sink = MemorySink()
    prof = profile(script=[{"do": "connect"}, {"do": "send", "count": 2, "rate_per_s": 50}])
    stats = await Generator(prof, ws_target(chat), sink, GeneratorOptions(experiment_id="e")).run()
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert len(recv) == 8
    assert all(e.checksum_ok is False for e in recv)
    assert stats.checksum_failures == 8
    # A corrupted echo does not count as the round trip: the expectation times out.
    assert stats.round_trips == 0


async def test_a_channel_changed_in_transit_is_corruption_not_an_isolation_violation(
    chat: ChatLikeServer,
) -> None:
    """The stamp's MAC covers the channel a message was published to: a delivery whose channel
    name was damaged fails its check (it once held, and the message read as reaching sessions
    never subscribed to that channel)."""
    chat.corrupt_channel = True
    sink = MemorySink()
    prof = profile(auth={"base_url": chat.base_url})
    stats = await Generator(prof, ws_target(chat), sink, GeneratorOptions(experiment_id="e")).run()
    broadcasts = [e for e in sink.events if isinstance(e, Receive) and e.channel is not None]
    echoes = [e for e in sink.events if isinstance(e, Receive) and e.channel is None]
    assert broadcasts
    assert len(broadcasts) <= chat.delivered
    assert all(e.checksum_ok is False and e.channel.startswith("Q") for e in broadcasts)
    assert all(e.checksum_ok for e in echoes)
    assert stats.checksum_failures == len(broadcasts)
    a = Analyzer("e")
    a.ingest(sink.events)
    a.finish()
    results = a.results()
    assert not [r for r in results if isinstance(r, IsolationGroup)]
    (overall,) = [r for r in results if isinstance(r, Integrity) and r.scope == "overall"]
    assert overall.corrupted == len(broadcasts)


async def test_server_close_is_recorded_then_the_session_reconnects(chat: ChatLikeServer) -> None:
    sink = MemorySink()
    prof = profile(
        tenants=[{"name": "acme", "users": 2}],
        duration_s=3,
        reconnect={"initial_ms": 50, "max_ms": 100, "jitter": 0},
        script=[{"do": "connect"}, {"do": "subscribe"}, {"do": "send", "rate_per_s": 20}],
    )
    gen = Generator(prof, ws_target(chat), sink, GeneratorOptions(experiment_id="e"))
    run = asyncio.create_task(gen.run())
    while gen.counters.receives < 10:
        await asyncio.sleep(0.02)
    await chat.kick_all(1011)
    while gen.counters.reconnects < 2:
        await asyncio.sleep(0.02)
    before = gen.counters.receives
    while gen.counters.receives < before + 10:
        await asyncio.sleep(0.02)
    gen.stop()
    await run
    errors = [e for e in sink.events if isinstance(e, SessionError)]
    assert {(e.error_class, e.phase) for e in errors} >= {("ServerClosed", "receive")}
    server_disc = [e for e in sink.events if isinstance(e, Disconnect) and e.by == "server"]
    assert {(e.session, e.code) for e in server_disc} == {
        ("acme-u0-s0", 1011),
        ("acme-u1-s0", 1011),
    }
    again = [e for e in sink.events if isinstance(e, ConnectStart) and e.attempt == 1]
    assert len(again) == 4  # the first connect and the reconnect of each session
    # after reconnecting the session re-subscribed: the subscribe acknowledgement came back
    # and sends continued with increasing seq
    for s in ("acme-u0-s0", "acme-u1-s0"):
        seqs = [e.seq for e in sink.events if isinstance(e, Send) and e.session == s]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)


async def test_raw_tcp_echo_line_framing(tcp_echo: TcpEcho) -> None:
    sink = MemorySink()
    prof = profile(
        target="echo",
        script=[
            {"do": "connect"},
            {"do": "send", "count": 5, "rate_per_s": 100},
            {"do": "disconnect"},
        ],
    )
    target = Target(name="echo", upstream=tcp_echo.address, protocol="tcp")
    stats = await Generator(prof, target, sink, GeneratorOptions(experiment_id="e")).run()
    assert stats.sends == 20
    assert stats.round_trips == 20
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert all(e.checksum_ok and e.protocol == "tcp" for e in recv)


async def test_round_trip_statistics_stay_bounded_and_match_the_events(tcp_echo: TcpEcho) -> None:
    # 4 sessions x 40 msg/s for 2.6 s: the buffer of new round trips is folded every second,
    # and the percentiles agree with the latencies the receive events carry.
    sink = MemorySink()
    prof = profile(
        target="echo",
        duration_s=2.6,
        script=[{"do": "connect"}, {"do": "send", "rate_per_s": 40}],
    )
    target = Target(name="echo", upstream=tcp_echo.address, protocol="tcp")
    gen = Generator(prof, target, sink, GeneratorOptions(experiment_id="e"))
    run = asyncio.create_task(gen.run())
    buffered: list[int] = []
    while not run.done():
        buffered.append(len(gen.counters.latencies_ms))
        await asyncio.sleep(0.05)
    stats = await run

    assert stats.round_trips == stats.receives > 300
    assert max(buffered) < 4 * 40 * 1.5  # never much more than one second's worth
    lat = sorted(e.latency_ms for e in sink.events if isinstance(e, Receive) if e.latency_ms)
    assert len(lat) == stats.round_trips
    assert stats.max_ms == lat[-1]
    # The sketch answers with the bucket of the value at rank floor(q * (n - 1)), within 1 %.
    assert stats.p50_ms == pytest.approx(lat[int(0.5 * (len(lat) - 1))], rel=0.011)
    assert stats.p99_ms == pytest.approx(lat[int(0.99 * (len(lat) - 1))], rel=0.011)


async def test_raw_tcp_length_prefixed_framing() -> None:
    from tests.generators.servers import TcpEcho

    async with TcpEcho(framing="length_prefixed") as server:
        sink = MemorySink()
        prof = profile(
            target="echo",
            framing="length_prefixed",
            script=[
                {"do": "connect"},
                {
                    "do": "send",
                    "count": 3,
                    "rate_per_s": 100,
                    "size": {"dist": "uniform", "min_bytes": 10, "max_bytes": 3000},
                },
            ],
        )
        target = Target(name="echo", upstream=server.address, protocol="tcp")
        stats = await Generator(prof, target, sink, GeneratorOptions(experiment_id="e")).run()
    assert stats.round_trips == 12
    assert stats.checksum_failures == 0


async def test_profiles_reusing_tenant_names_on_one_target_never_take_each_others_messages(
    chat: ChatLikeServer,
) -> None:
    """Two load profiles of one run (one generator id, as ``aftershock run`` gives them) on the
    same target with the same tenants, broadcasting on the same channel: each session counts
    exactly its own messages as its own, and the analyzer finds nothing lost or duplicated."""
    sink = MemorySink()
    prof = profile(
        auth={"base_url": chat.base_url},
        script=[
            {"do": "connect"},
            {"do": "subscribe"},
            {"do": "send", "count": 3, "rate_per_s": 50, "expect": "broadcast"},
            {"do": "send", "count": 2, "rate_per_s": 50, "expect": "echo"},
            {"do": "think", "min_ms": 300},  # the other sessions' broadcasts come in
            {"do": "disconnect"},
        ],
    )
    tags = session_tags([prof, prof])
    assert tags == ["", "-p2"]
    gens = [
        Generator(
            prof,
            ws_target(chat),
            sink,
            GeneratorOptions(
                experiment_id="exp-1", run_id="r1", generator_id="g1", session_tag=tag
            ),
        )
        for tag in tags
    ]
    await asyncio.gather(*(g.run() for g in gens))
    sends = [e for e in sink.events if isinstance(e, Send)]
    recv = [e for e in sink.events if isinstance(e, Receive)]
    sessions = {e.session for e in sends}
    assert len(sessions) == 8  # 2 profiles x 4, none named alike
    assert sum(s.endswith("-p2") for s in sessions) == 4
    # ground truth: no session received more than the server sent (a broadcast sent to a
    # session already leaving on a starved machine may go unread), and none twice
    assert len(recv) <= chat.delivered
    assert len({(e.session, e.origin_session, e.origin_seq) for e in recv}) == len(recv)
    for session in sessions:
        mine = sorted(e.seq for e in sends if e.session == session)
        answered = sorted(e.seq for e in recv if e.session == session and e.seq is not None)
        assert mine == answered == [1, 2, 3, 4, 5], session
    a = Analyzer("exp-1")
    a.ingest(sink.events)
    a.finish()
    (overall,) = [r for r in a.results() if isinstance(r, Integrity) and r.scope == "overall"]
    assert (overall.sent, overall.lost, overall.duplicated, overall.late_replies) == (40, 0, 0, 0)
    assert overall.received == len(recv)


async def test_http_weighted_mix_records_status_and_echo(
    chat: ChatLikeServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    sink = MemorySink()
    prof = profile(
        target="api",
        auth={"base_url": chat.base_url},
        http_mix=[
            {"name": "echo", "method": "POST", "path": "/api/echo", "weight": 3},
            {"name": "items", "method": "GET", "path": "/api/items", "weight": 1},
        ],
        script=[
            {"do": "connect"},
            {"do": "send", "count": 20, "rate_per_s": 200, "expect": "response"},
        ],
    )
    target = Target(name="api", upstream=chat.address, protocol="http")
    stats = await Generator(
        prof, target, sink, GeneratorOptions(experiment_id="e"), tracer_provider=spans[0]
    ).run()
    recv = [e for e in sink.events if isinstance(e, Receive)]
    assert len(recv) == 80
    assert {e.status for e in recv} == {200}
    echoed = [e for e in recv if e.checksum_ok]
    plain = [e for e in recv if e.checksum_ok is None]
    assert echoed
    assert plain
    assert len(echoed) > len(plain)
    assert all(e.latency_ms is not None for e in recv)
    assert stats.round_trips == 80
    # each request carries the traceparent of its own round-trip span
    sent_parents = chat.calls.api_traceparents
    assert len(sent_parents) == len(echoed)
    span_ids = {f"00-{e.trace_id}-{e.span_id}-01" for e in recv}
    assert set(sent_parents) <= span_ids
    assert len(set(sent_parents)) == len(sent_parents)
    # each send's bytes are the body that left: what the server read, a GET's none
    sends = [e for e in sink.events if isinstance(e, Send)]
    assert sorted(e.bytes for e in sends) == sorted(n for _, n in chat.calls.api_bodies)
    assert {m for m, _ in chat.calls.api_bodies} == {"GET", "POST"}
    assert [n for m, n in chat.calls.api_bodies if m == "GET"].count(0) == len(plain) > 0


class _EveryOther(Sampler):
    """Records every other root span (a session), deterministically."""

    def __init__(self) -> None:
        self.n = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.n += 1
        decision = Decision.RECORD_AND_SAMPLE if self.n % 2 else Decision.DROP
        return SamplingResult(decision)

    def get_description(self) -> str:
        return "every other"


async def test_sessions_left_out_by_the_sampler_name_no_trace(chat: ChatLikeServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(_EveryOther()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = MemorySink()
    prof = profile(auth={"base_url": chat.base_url}, tenants=[{"name": "acme", "users": 6}])
    await Generator(
        prof,
        ws_target(chat),
        sink,
        GeneratorOptions(experiment_id="exp-s", trace_every=1),
        tracer_provider=provider,
    ).run()
    recorded = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}
    by_session: dict[str, set[str | None]] = {}
    for e in sink.events:
        if isinstance(e, (Send, Receive, ConnectStart)):
            by_session.setdefault(e.session, set()).add(e.trace_id)
    traced = {s for s, ids in by_session.items() if ids != {None}}
    untraced = {s for s, ids in by_session.items() if ids == {None}}
    # half the sessions traced, half not; every trace id an event names was recorded
    assert len(traced) == len(untraced) == 3
    for s in traced:
        assert None not in by_session[s]
        assert by_session[s] <= recorded
    # the handshake passes the sampling decision on: the server continues only traced ones
    sampled = [int(h["traceparent"][-2:], 16) & 1 for h in chat.calls.ws_headers]
    assert sorted(sampled) == [0, 0, 0, 1, 1, 1]
