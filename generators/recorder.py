"""Writes session events on the hot path, straight into their wire bytes.

A session event is mostly constant: who (tenant, user, session, target, protocol) is fixed per
session and provenance (experiment, run, generator) per recorder. Both are encoded to JSON once;
each event is then one ``bytes % values`` format, the exact bytes
:func:`spine.eventlog.codec.encode_event` writes for the equivalent validated model (same
field order, same number formatting). A sink that takes encoded events
(:class:`~spine.eventlog.EncodedEventSink`, e.g. the Kafka publisher) gets those bytes, so
no per-event object is built or kept; any other sink gets the model pydantic validates from them.
``tests/generators/test_recorder.py`` proves the equivalence for every kind. Times come from
the process's one clock origin (:mod:`spine.clock`), shared by every recorder of the process.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Literal

import orjson

from schemas.base import SCHEMA_VERSION
from schemas.events import EventAdapter
from spine.clock import MONO0_NS, WALL0_NS
from spine.eventlog.sink import EncodedEventSink

if TYPE_CHECKING:
    from collections.abc import Callable

    from schemas.events import Protocol as WireProtocol
    from spine.eventlog.sink import EventSink

Phase = Literal["connect", "auth", "send", "receive", "close"]
Expect = Literal["echo", "broadcast", "response", "none"]
SkipReason = Literal["behind", "busy"]
Trace = tuple[str | None, str | None]
Who = tuple[str, str, str]

_dumps = orjson.dumps
_NULL = b"null"
_MAX_MESSAGE = 4000


def _lit(value: str) -> bytes:
    """A JSON string, escaped for use inside a ``bytes %`` format."""
    return _dumps(value).replace(b"%", b"%%")


def _trace_json(trace: Trace) -> bytes:
    trace_id, span_id = trace
    return (
        b'"trace_id":'
        + (_NULL if trace_id is None else b'"%s"' % trace_id.encode())
        + b',"span_id":'
        + (_NULL if span_id is None else b'"%s"' % span_id.encode())
    )


_NO_TRACE_JSON = _trace_json((None, None))
_EXPECT = {e: _dumps(e) for e in ("echo", "broadcast", "response", "none")}


class Recorder:
    """Shared by every session of a generator: provenance, event ids, the sink."""

    __slots__ = (
        "_counter",
        "_emit",
        "_fmt",
        "_id_tail",
        "_key_prefix",
        "_protocol",
        "_target",
        "sink",
    )

    def __init__(
        self,
        sink: EventSink,
        *,
        experiment_id: str,
        run_id: str,
        generator_id: str,
        target: str,
        protocol: WireProtocol,
    ) -> None:
        self.sink = sink
        self._counter = 0
        """Events written so far (its low 32 bits are in each event id)."""
        self._id_tail = os.urandom(4).hex()
        self._target = target
        self._protocol = protocol
        self._key_prefix = f"{experiment_id}/{target}/"
        self._emit: Callable[[str, bytes], None] = (
            sink.emit_encoded if isinstance(sink, EncodedEventSink) else self._emit_model
        )
        # Field order is the models' (EventBase, SessionEventBase, then the kind's fields), so
        # the bytes equal encode_event() of the validated model. Arguments: ts, counter, ts,
        # mono, trace, who, then the kind's own fields.
        common = (
            b'{"schema_version":%d,"event_id":"%%016x%s%%08x","experiment_id":%s,"run_id":%s,'
            b'"generator_id":%s,"ts_ns":%%d,"mono_ns":%%d,%%b,%%b,"kind":"session.'
        ) % (
            SCHEMA_VERSION,
            self._id_tail.encode(),
            _lit(experiment_id),
            _lit(run_id),
            _lit(generator_id),
        )
        self._fmt = {
            "connect_start": common + b'connect_start","attempt":%d}',
            "connected": common + b'connected","attempt":%d,"connect_ms":%b}',
            "subscribed": common + b'subscribed","channels":%b}',
            "send": common + b'send","seq":%d,"bytes":%d,"channel":%b,"expect":%b,"late_ms":%b}',
            "skipped": common + b'skipped","count":%d,"late_ms":%b,"reason":%b}',
            "receive": common + b'receive","seq":%b,"bytes":%d,"latency_ms":%b,"origin_tenant":%b,'
            b'"origin_user":%b,"origin_session":%b,"origin_seq":%b,"checksum_ok":%b,'
            b'"status":%b,"channel":%b}',
            # A receipt of this session's own echo: origin is the session itself (pre-encoded),
            # the stamp held, no channel.
            "receive_own": common + b'receive","seq":%d,"bytes":%d,"latency_ms":%b,%b,'
            b'"origin_seq":%d,"checksum_ok":true,"status":%b,"channel":null}',
            "error": common + b'error","error_class":%b,"message":%b,"phase":%b,"seq":%b}',
            "disconnect": common + b'disconnect","by":%b,"code":%b,"reason":%b}',
        }

    @property
    def emitted(self) -> int:
        """Events written so far."""
        return self._counter

    def session(self, who: Who) -> SessionLog:
        """The log of one session's events (build once per session; it holds encoded JSON)."""
        return SessionLog(self, who)

    def error(self, who: Who, error_class: str, message: str, phase: Phase, trace: Trace) -> None:
        """A ``session.error`` outside a running session (auth, on behalf of a user)."""
        self.session(who).error(error_class, message, phase, trace)

    def _emit_model(self, key: str, data: bytes) -> None:
        self.sink.emit(EventAdapter.validate_json(data))


class SessionLog:
    """Writes one session's events. The methods are the event kinds of ``schemas.events``."""

    __slots__ = (
        "_emit",
        "_fmt",
        "_origin_json",
        "_rec",
        "_trace",
        "_trace_json",
        "_who_json",
        "key",
        "who",
    )

    def __init__(self, recorder: Recorder, who: Who) -> None:
        tenant, user, session = who
        self.who = who
        self.key = recorder._key_prefix + tenant
        """The partition key (``codec.partition_key`` of every event of this session)."""
        self._rec = recorder
        self._emit = recorder._emit
        self._fmt = recorder._fmt
        self._who_json = b'"tenant":%s,"user":%s,"session":%s,"target":%s,"protocol":%s' % (
            _dumps(tenant),
            _dumps(user),
            _dumps(session),
            _dumps(recorder._target),
            _dumps(recorder._protocol.value),
        )
        self._origin_json = b'"origin_tenant":%s,"origin_user":%s,"origin_session":%s' % (
            _dumps(tenant),
            _dumps(user),
            _dumps(session),
        )
        self._trace: Trace = (None, None)
        self._trace_json = _NO_TRACE_JSON

    def use_trace(self, trace: Trace) -> None:
        """Pre-encode the session's own trace ids (passing this very tuple later is cheap)."""
        self._trace = trace
        self._trace_json = _trace_json(trace)

    def _write(self, kind: str, trace: Trace, fields: tuple[object, ...]) -> None:
        rec = self._rec
        mono = time.monotonic_ns() - MONO0_NS
        ts = WALL0_NS + mono
        rec._counter += 1
        data = self._fmt[kind] % (
            ts,
            rec._counter & 0xFFFFFFFF,
            ts,
            mono,
            self._trace_json if trace is self._trace else _trace_json(trace),
            self._who_json,
            *fields,
        )
        self._emit(self.key, data)

    def connect_start(self, attempt: int, trace: Trace) -> None:
        self._write("connect_start", trace, (attempt,))

    def connected(self, attempt: int, connect_ms: float, trace: Trace) -> None:
        self._write("connected", trace, (attempt, _dumps(float(connect_ms))))

    def subscribed(self, channels: tuple[str, ...], trace: Trace) -> None:
        self._write("subscribed", trace, (_dumps(list(channels)),))

    def send(
        self,
        seq: int,
        nbytes: int,
        channel: str | None,
        expect: Expect,
        trace: Trace,
        late_ms: float | None = None,
    ) -> None:
        # The hot path: _write inlined.
        rec = self._rec
        mono = time.monotonic_ns() - MONO0_NS
        ts = WALL0_NS + mono
        rec._counter += 1
        data = self._fmt["send"] % (
            ts,
            rec._counter & 0xFFFFFFFF,
            ts,
            mono,
            self._trace_json if trace is self._trace else _trace_json(trace),
            self._who_json,
            seq,
            nbytes,
            _NULL if channel is None else _dumps(channel),
            _EXPECT[expect],
            _NULL if late_ms is None else _dumps(float(late_ms)),
        )
        self._emit(self.key, data)

    def skipped(self, count: int, late_ms: float, reason: SkipReason, trace: Trace) -> None:
        self._write("skipped", trace, (count, _dumps(float(late_ms)), _dumps(reason)))

    def receive(
        self,
        *,
        seq: int | None,
        nbytes: int,
        latency_ms: float | None,
        origin: tuple[str, str, str, int] | None,
        checksum_ok: bool | None,
        status: int | None,
        channel: str | None,
        trace: Trace,
    ) -> None:
        if origin is None:
            o_tenant = o_user = o_session = o_seq = _NULL
        else:
            o_tenant, o_user, o_session = _dumps(origin[0]), _dumps(origin[1]), _dumps(origin[2])
            o_seq = b"%d" % origin[3]
        fields = (
            _NULL if seq is None else b"%d" % seq,
            nbytes,
            _NULL if latency_ms is None else _dumps(float(latency_ms)),
            o_tenant,
            o_user,
            o_session,
            o_seq,
            _dumps(checksum_ok),
            _NULL if status is None else b"%d" % status,
            _NULL if channel is None else _dumps(channel),
        )
        self._write("receive", trace, fields)

    def receive_own(
        self, seq: int, nbytes: int, latency_ms: float, trace: Trace, status: int | None = None
    ) -> None:
        """``receive(seq=seq, origin=(*who, seq), checksum_ok=True, status=status,
        channel=None)``: the session's own echo, matched to what it sent (the hot receive
        path; ``status`` is an HTTP answer's)."""
        rec = self._rec
        mono = time.monotonic_ns() - MONO0_NS
        ts = WALL0_NS + mono
        rec._counter += 1
        data = self._fmt["receive_own"] % (
            ts,
            rec._counter & 0xFFFFFFFF,
            ts,
            mono,
            self._trace_json if trace is self._trace else _trace_json(trace),
            self._who_json,
            seq,
            nbytes,
            _dumps(float(latency_ms)),
            self._origin_json,
            seq,
            _NULL if status is None else b"%d" % status,
        )
        self._emit(self.key, data)

    def error(
        self,
        error_class: str,
        message: str,
        phase: Phase,
        trace: Trace,
        seq: int | None = None,
    ) -> None:
        self._write(
            "error",
            trace,
            (
                _dumps((error_class or "Error")[:200]),
                _dumps(message[:_MAX_MESSAGE]),
                _dumps(phase),
                _NULL if seq is None else b"%d" % seq,
            ),
        )

    def disconnect(
        self,
        by: Literal["client", "server", "error"],
        code: int | None,
        reason: str,
        trace: Trace,
    ) -> None:
        self._write(
            "disconnect",
            trace,
            (_dumps(by), _NULL if code is None else b"%d" % code, _dumps(reason)),
        )
