"""The recorder writes each session event's wire bytes itself: they must be exactly what the
codec writes for the validated model, for every kind and every shape of value."""

from __future__ import annotations

import itertools

import pytest

from generators.recorder import Recorder, SessionLog
from schemas.events import EventAdapter, Protocol, SessionEventBase
from spine.eventlog import EncodedEventSink, MemorySink, codec
from tests.generators.conftest import SESSION_KINDS

TRACE = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
SPAN = ("4bf92f3577b34da6a3ce929d0e0e4736", "b7ad6b7169203331")
NONE = (None, None)


class EncodedSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def emit(self, event: object) -> None:
        raise AssertionError("an encoded sink gets bytes, not models")

    def emit_encoded(self, key: str, data: bytes) -> None:
        self.records.append((key, data))


def _recorder(sink: object, experiment_id: str = "exp-1") -> Recorder:
    return Recorder(
        sink,  # type: ignore[arg-type]
        experiment_id=experiment_id,
        run_id="run-9",
        generator_id="host-42",
        target="gateway",
        protocol=Protocol.WS,
    )


def _every_call(log: SessionLog) -> None:
    """Every method with the value shapes each field can take."""
    log.connect_start(1, NONE)
    log.connect_start(3, TRACE)
    log.connected(1, 12.5, TRACE)
    log.connected(2, 7, NONE)  # an int where the schema has a float
    log.connected(1, 0.0, SPAN)
    log.send(1, 130, None, "echo", TRACE)
    log.send(2, 0, 'chan "quoted" \\ ünï', "broadcast", SPAN)
    for expect in ("response", "none"):
        log.send(3, 99, "general", expect, NONE)  # type: ignore[arg-type]
    log.receive(
        seq=1,
        nbytes=130,
        latency_ms=0.734,
        origin=("acme", "u-1", "s-1", 1),
        checksum_ok=True,
        status=None,
        channel=None,
        trace=TRACE,
    )
    log.receive(
        seq=None,
        nbytes=0,
        latency_ms=None,
        origin=None,
        checksum_ok=None,
        status=None,
        channel=None,
        trace=NONE,
    )
    log.receive(
        seq=None,
        nbytes=77,
        latency_ms=1e-7,  # exponent notation
        origin=("other tenant", 'ü\n\t"', "%s%d", 0),
        checksum_ok=False,
        status=503,
        channel="news",
        trace=SPAN,
    )
    log.receive(
        seq=5,
        nbytes=5,
        latency_ms=123456789.0,
        origin=("acme", "u-1", "s-1", 5),
        checksum_ok=True,
        status=200,
        channel=None,
        trace=TRACE,
    )
    log.receive_own(7, 130, 0.5, TRACE)
    log.receive_own(8, 0, 1e-7, SPAN)
    log.receive_own(9, 12, 3.5, TRACE, 201)  # an HTTP echo
    log.error("Timeout", "no echo for seq 4 within 5000 ms", "receive", TRACE, 4)
    log.error("", "x" * 5000, "connect", NONE)  # empty class, message over the bound
    log.error("E" * 300, 'quotes " and \\ and \x00 and %', "auth", SPAN, None)
    for phase in ("send", "close"):
        log.error("ServerClosed", "going away (code 1001)", phase, TRACE)  # type: ignore[arg-type]
    log.send(4, 12, None, "response", TRACE, 250.5)  # late
    log.send(5, 12, None, "response", NONE, 0)
    log.skipped(3, 1500.25, "behind", TRACE)
    log.skipped(1, 0, "busy", NONE)
    log.disconnect("client", 1000, "", TRACE)
    log.disconnect("server", 1011, "upstream down ü", NONE)
    log.disconnect("error", None, "connection reset", SPAN)
    log.subscribed(("general", 'q "ü" %s'), TRACE)
    log.subscribed((), NONE)


@pytest.mark.parametrize("experiment_id", ["exp-1", "exp %d%% ü"])
def test_bytes_equal_the_codec_encoding_of_the_validated_model(experiment_id: str) -> None:
    sink = EncodedSink()
    assert isinstance(sink, EncodedEventSink)
    log = _recorder(sink, experiment_id).session(("acme", "u-1", "s-1"))
    log.use_trace(TRACE)
    _every_call(log)
    assert len(sink.records) == 30
    kinds = set()
    ids = set()
    for key, data in sink.records:
        event = EventAdapter.validate_json(data)  # the schema of record accepts it...
        assert isinstance(event, SessionEventBase)
        assert codec.encode_event(event) == data  # ...and the codec writes these very bytes
        assert codec.partition_key(event) == key
        assert (event.experiment_id, event.run_id, event.generator_id) == (
            experiment_id,
            "run-9",
            "host-42",
        )
        assert (event.tenant, event.user, event.session, event.target) == (
            "acme",
            "u-1",
            "s-1",
            "gateway",
        )
        kinds.add(event.kind)
        ids.add(event.event_id)
    assert kinds == SESSION_KINDS
    assert len(ids) == len(sink.records)
    # A batch of them is the record the publisher would have made from the models.
    items = [data for _, data in sink.records]
    models = [EventAdapter.validate_json(d) for d in items]
    assert codec.join_batch(items) == codec.encode_batch(models)
    assert codec.decode_batch(codec.join_batch(items)) == models


def test_values_are_recorded_as_given_and_bounded_by_the_schema() -> None:
    sink = MemorySink()  # not an encoded sink: gets validated models
    log = _recorder(sink).session(("acme", "u-1", "s-1"))
    log.use_trace(TRACE)
    _every_call(log)
    ev = sink.events
    assert [e.kind for e in ev[:3]] == ["session.connect_start"] * 2 + ["session.connected"]
    assert (ev[0].trace_id, ev[0].span_id) == (None, None)  # type: ignore[union-attr]
    assert (ev[1].attempt, ev[1].trace_id, ev[1].span_id) == (3, *TRACE)  # type: ignore[union-attr]
    assert ev[3].connect_ms == 7.0  # type: ignore[union-attr]
    send = ev[6]
    assert (send.seq, send.bytes, send.channel, send.expect) == (  # type: ignore[union-attr]
        2,
        0,
        'chan "quoted" \\ ünï',
        "broadcast",
    )
    assert send.span_id == SPAN[1]
    odd = ev[11]
    assert (odd.latency_ms, odd.origin_user, odd.origin_session, odd.checksum_ok) == (  # type: ignore[union-attr]
        1e-7,
        'ü\n\t"',
        "%s%d",
        False,
    )
    assert (odd.origin_seq, odd.status, odd.channel) == (0, 503, "news")  # type: ignore[union-attr]
    errors = [e for e in ev if e.kind == "session.error"]
    assert errors[0].seq == 4  # type: ignore[union-attr]
    assert errors[1].error_class == "Error"  # type: ignore[union-attr]
    assert len(errors[1].message) == 4000  # type: ignore[union-attr]
    assert len(errors[2].error_class) == 200  # type: ignore[union-attr]
    assert errors[2].message == 'quotes " and \\ and \x00 and %'  # type: ignore[union-attr]
    kinds = ("session.send", "session.skipped")
    late, on_time, behind, busy = [e for e in ev if e.kind in kinds][-4:]
    assert (late.seq, late.late_ms) == (4, 250.5)  # type: ignore[union-attr]
    assert on_time.late_ms == 0.0  # type: ignore[union-attr]
    assert (behind.count, behind.late_ms, behind.reason) == (3, 1500.25, "behind")  # type: ignore[union-attr]
    assert (busy.count, busy.late_ms, busy.reason) == (1, 0.0, "busy")  # type: ignore[union-attr]
    last = ev[-3]
    assert (last.by, last.code, last.reason) == ("error", None, "connection reset")  # type: ignore[union-attr]
    assert [e.channels for e in ev[-2:]] == [["general", 'q "ü" %s'], []]  # type: ignore[union-attr]
    # Time and identity: ids unique, wall and monotonic clocks never go back.
    assert len({e.event_id for e in ev}) == len(ev)
    assert all(a.mono_ns <= b.mono_ns for a, b in itertools.pairwise(ev))
    assert all(a.ts_ns <= b.ts_ns for a, b in itertools.pairwise(ev))


def test_sessions_of_one_recorder_share_provenance_but_not_identity() -> None:
    sink = EncodedSink()
    rec = _recorder(sink)
    a = rec.session(("acme", "u-1", "s-1"))
    b = rec.session(("globex", "u-2", "s-2"))
    a.send(1, 10, None, "echo", NONE)
    b.send(1, 10, None, "echo", NONE)
    rec.error(("initech", "u-3", "s-3"), "LoginFailed", "401", "auth", NONE)
    events = [EventAdapter.validate_json(d) for _, d in sink.records]
    assert [e.tenant for e in events] == ["acme", "globex", "initech"]  # type: ignore[union-attr]
    assert [k for k, _ in sink.records] == [
        "exp-1/gateway/acme",
        "exp-1/gateway/globex",
        "exp-1/gateway/initech",
    ]
    assert rec.emitted == 3


@pytest.mark.parametrize("status", [None, 200])
@pytest.mark.parametrize("who", [("acme", "u-1", "s-1"), ('t "q" %d', "ü\n", "s%s")])
def test_receive_own_is_receive_with_the_session_as_origin(
    who: tuple[str, str, str], status: int | None
) -> None:
    sink = EncodedSink()
    log = _recorder(sink).session(who)
    log.use_trace(TRACE)
    log.receive_own(9, 130, 2.25, TRACE, status)
    log.receive(
        seq=9,
        nbytes=130,
        latency_ms=2.25,
        origin=(*who, 9),
        checksum_ok=True,
        status=status,
        channel=None,
        trace=TRACE,
    )
    own, general = (EventAdapter.validate_json(d) for _, d in sink.records)
    assert codec.encode_event(own) == sink.records[0][1]
    fields = {"event_id", "ts_ns", "mono_ns"}
    assert own.model_dump(exclude=fields) == general.model_dump(exclude=fields)
