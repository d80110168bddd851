"""What sessions' spans say, by OpenTelemetry's semantic conventions, over real sockets: span
kinds, server/URL/HTTP/WebSocket/messaging attributes, error status (operations and whole
sessions, compared with the errors the sessions recorded), and the faults in force."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, StatusCode

from generators.runner import Generator, GeneratorOptions
from schemas.events import SessionError
from schemas.targets import Target
from spine.activefaults import FAULT_IDS_ATTRIBUTE, ActiveFaults, FaultMark
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.servers import HttpEcho

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.generators.servers import ChatLikeServer, TcpEcho

Spans = tuple["TracerProvider", "InMemorySpanExporter"]


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _check_sessions_against_errors(spans: list[ReadableSpan], sink: MemorySink) -> None:
    """A session's root span is an error exactly when the session recorded errors, and says
    how many."""
    recorded = Counter(e.trace_id for e in sink.events if isinstance(e, SessionError))
    for s in spans:
        tid = format(s.context.trace_id, "032x")
        n = recorded.get(tid, 0)
        assert _attrs(s)["aftershock.errors"] == n
        if n:
            assert s.status.status_code is StatusCode.ERROR
            assert s.status.description == f"{n} errors"
            assert _attrs(s)["error.type"] == "aftershock.session_errors"
        else:
            assert s.status.status_code is StatusCode.UNSET


async def test_http_round_trips_are_client_requests_with_status(
    chat: ChatLikeServer, spans: Spans
) -> None:
    provider, exporter = spans
    sink = MemorySink()
    script = [
        {"do": "connect"},
        {"do": "send", "count": 3, "rate_per_s": 100, "expect": "response"},
    ]
    ok = profile(target="api", http_mix=[{"name": "echo", "method": "POST", "path": "/api/echo"}],
                 script=script)  # fmt: skip
    missing = profile(target="api", tenants=[{"name": "initech", "users": 1}],
                      http_mix=[{"name": "nope", "method": "GET", "path": "/api/missing"}],
                      script=script)  # fmt: skip
    target = Target(name="api", upstream=chat.address, protocol="http")
    for prof in (ok, missing):
        await Generator(
            prof, target, sink, GeneratorOptions(experiment_id="e"), tracer_provider=provider
        ).run()
    named = _by_name(exporter)
    trips = named["round_trip"]
    assert len(trips) == 4 * 3 + 1 * 3
    base = f"http://127.0.0.1:{chat.port}"
    for s in trips:
        a = _attrs(s)
        assert s.kind is SpanKind.CLIENT
        assert a["network.protocol.name"] == "http"
        assert (a["server.address"], a["server.port"]) == ("127.0.0.1", chat.port)
        if a["http.request.method"] == "POST":
            assert a["url.full"] == f"{base}/api/echo"
            assert a["http.response.status_code"] == 200
            assert s.status.status_code is StatusCode.UNSET
        else:
            assert (a["http.request.method"], a["url.full"]) == ("GET", f"{base}/api/missing")
            assert a["http.response.status_code"] == 404
            assert s.status.status_code is StatusCode.ERROR
            assert a["error.type"] == "404"
    assert Counter(_attrs(s)["http.request.method"] for s in trips) == {"POST": 12, "GET": 3}
    for s in named["connect"]:
        assert s.kind is SpanKind.CLIENT
        assert _attrs(s)["url.full"] == base + "/"  # the target's path
    sessions = named["session"]
    assert all(s.kind is SpanKind.INTERNAL for s in sessions)
    assert sum(s.status.status_code is StatusCode.ERROR for s in sessions) == 1
    _check_sessions_against_errors(sessions, sink)


async def test_a_weighted_mix_names_the_request_each_round_trip_sent(spans: Spans) -> None:
    """Each round trip's span names the method and URL of the request that really left, as
    the server saw it (matched by the span id in the request's traceparent)."""
    provider, exporter = spans
    prof = profile(
        target="api",
        tenants=[{"name": "acme", "users": 2}],
        http_mix=[
            {"name": "echo", "method": "POST", "path": "/echo", "weight": 3},
            {"name": "items", "method": "GET", "path": "/items%2F1?q=a%20b", "weight": 1},
            {"name": "drop", "method": "DELETE", "path": "/things/7", "weight": 1},
        ],
        script=[{"do": "connect"},
                {"do": "send", "count": 20, "rate_per_s": 100, "expect": "response"}],
    )  # fmt: skip
    with HttpEcho() as server:
        target = Target(name="api", upstream=server.address, protocol="http")
        await Generator(
            prof,
            target,
            MemorySink(),
            GeneratorOptions(experiment_id="e"),
            tracer_provider=provider,
        ).run()
        seen = list(server.requests)
    base = f"http://127.0.0.1:{server.port}"
    by_span = {r.headers["traceparent"].split("-")[2]: r for r in seen}
    trips = _by_name(exporter)["round_trip"]
    assert len(trips) == len(seen) == 40
    for s in trips:
        a = _attrs(s)
        request = by_span[format(s.context.span_id, "016x")]
        assert (a["http.request.method"], a["url.full"]) == (
            request.method,
            base + request.path,
        )
        assert a["http.response.status_code"] == 200
    assert {r.method for r in seen} == {"POST", "GET", "DELETE"}


async def test_tcp_spans_name_the_server_and_transport(tcp_echo: TcpEcho, spans: Spans) -> None:
    provider, exporter = spans
    prof = profile(
        target="echo",
        tenants=[{"name": "acme", "users": 1}],
        script=[{"do": "connect"}, {"do": "send", "count": 2, "rate_per_s": 50, "expect": "echo"}],
    )
    target = Target(name="echo", upstream=tcp_echo.address, protocol="tcp")
    await Generator(
        prof, target, MemorySink(), GeneratorOptions(experiment_id="e"), tracer_provider=provider
    ).run()
    named = _by_name(exporter)
    host, port = tcp_echo.address.rsplit(":", 1)
    for s in named["connect"] + named["round_trip"]:
        a = _attrs(s)
        assert s.kind is SpanKind.CLIENT
        assert (a["server.address"], a["server.port"]) == (host, int(port))
        assert a["network.transport"] == "tcp"
        assert "network.protocol.name" not in a
        assert "url.full" not in a


async def test_ws_spans_carry_the_faults_in_force(chat: ChatLikeServer, spans: Spans) -> None:
    provider, exporter = spans
    faults = ActiveFaults()
    now = time.time_ns()
    faults.update(
        FaultMark(fault_id="lag", start_ns=now - 10**9, trace_id="a" * 32, span_id="1" * 16)
    )
    faults.update(FaultMark(fault_id="past", start_ns=now - 3 * 10**9, end_ns=now - 2 * 10**9))
    sink = MemorySink()
    gen = Generator(
        profile(auth={"base_url": chat.base_url}),
        Target(name="gw", upstream=chat.address, protocol="ws", path="/ws"),
        sink,
        GeneratorOptions(experiment_id="e"),
        tracer_provider=provider,
        faults=faults,
    )
    await gen.run()
    named = _by_name(exporter)
    url = f"ws://127.0.0.1:{chat.port}/ws"
    for s in named["session"] + named["connect"] + named["round_trip"]:
        a = _attrs(s)
        assert a[FAULT_IDS_ATTRIBUTE] == ("lag",)
        assert [
            (format(lk.context.span_id, "016x"), dict(lk.attributes or {})) for lk in s.links
        ] == [("1" * 16, {"aftershock.fault.id": "lag"})]
    for s in named["connect"]:
        a = _attrs(s)
        assert (a["url.full"], a["http.request.method"]) == (url, "GET")
        assert a["network.protocol.name"] == "websocket"
    broadcasts = [s for s in named["round_trip"] if "messaging.destination.name" in _attrs(s)]
    echoes = [s for s in named["round_trip"] if "messaging.destination.name" not in _attrs(s)]
    assert (len(broadcasts), len(echoes)) == (4 * 3, 4 * 2)
    for s in broadcasts:
        a = _attrs(s)
        assert a["messaging.destination.name"] == "general"
        assert a["messaging.operation.type"] == "send"
        assert a["url.full"] == url
    _check_sessions_against_errors(named["session"], sink)
