"""The worker's record decoder gives exactly what the pydantic codec gives, on any input.

``decode_record`` must accept what ``codec.decode_batch`` accepts, reject what it rejects with
the same error, and produce the same values (and value types) in the analysis form. Valid
records must take the fast path; malformed ones may take either.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.core.events import PAIRS, analysis_form
from analyzers.decode import decode_events, decode_record, fast_decode
from analyzers.synth import synthetic_events
from schemas.base import SCHEMA_VERSION
from schemas.events import parse_event
from spine.errors import DecodeError
from spine.eventlog import codec
from spine.eventlog.codec import encode_event

KINDS = [p.model_fields["kind"].default for p, _ in PAIRS]
IDS = st.text(min_size=1, max_size=12)
NAT = st.integers(min_value=0, max_value=2**70)
POS_FLOAT = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False)
HEX32 = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
HEX16 = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


def _opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


OWN: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "session.connect_start": {"attempt": st.integers(min_value=1, max_value=2**40)},
    "session.connected": {
        "attempt": st.integers(min_value=1, max_value=9),
        "connect_ms": POS_FLOAT,
    },
    "session.subscribed": {"channels": st.lists(IDS, max_size=3)},
    "session.send": {
        "seq": NAT,
        "bytes": NAT,
        "channel": _opt(st.text(max_size=8)),
        "expect": st.sampled_from(["echo", "broadcast", "response", "none"]),
        "late_ms": _opt(POS_FLOAT | st.integers(min_value=0, max_value=10**6)),
    },
    "session.skipped": {
        "count": st.integers(min_value=1, max_value=2**40),
        "late_ms": POS_FLOAT | st.integers(min_value=0, max_value=10**6),
        "reason": st.sampled_from(["behind", "busy"]),
    },
    "session.receive": {
        "seq": _opt(NAT),
        "bytes": NAT,
        "latency_ms": _opt(POS_FLOAT | st.integers(min_value=0, max_value=10**6)),
        "origin_tenant": _opt(st.text(max_size=8)),
        "origin_user": _opt(st.text(max_size=8)),
        "origin_session": _opt(st.text(max_size=8)),
        "origin_seq": _opt(st.integers(min_value=-(2**70), max_value=2**70)),
        "checksum_ok": _opt(st.booleans()),
        "status": _opt(st.integers(min_value=-5, max_value=600)),
        "channel": _opt(st.text(max_size=8)),
    },
    "session.error": {
        "error_class": IDS,
        "message": st.text(max_size=40),
        "phase": st.sampled_from(["connect", "auth", "send", "receive", "close"]),
        "seq": _opt(st.integers(min_value=-3, max_value=2**40)),
    },
    "session.disconnect": {
        "by": st.sampled_from(["client", "server", "error"]),
        "code": _opt(st.integers(min_value=-1, max_value=5000)),
        "reason": st.text(max_size=10),
    },
}


@st.composite
def session_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    out: dict[str, Any] = {
        "schema_version": draw(st.integers(min_value=-2, max_value=3)),
        "event_id": draw(st.text(min_size=1, max_size=64)),
        "experiment_id": draw(IDS),
        "run_id": draw(IDS),
        "generator_id": draw(IDS),
        "ts_ns": draw(NAT),
        "mono_ns": draw(NAT),
        "trace_id": draw(_opt(HEX32)),
        "span_id": draw(_opt(HEX16)),
        "tenant": draw(IDS),
        "user": draw(IDS),
        "session": draw(IDS),
        "target": draw(IDS),
        "protocol": draw(st.sampled_from(["ws", "http", "tcp"])),
        "kind": kind,
    }
    for name, strategy in OWN[kind].items():
        out[name] = draw(strategy)
    return dict(draw(st.permutations(list(out.items()))))


JUNK = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "1", "0.5", "true", "WS", "Echo", "x" * 201, "a" * 4001, "é", "\n"])
    | st.sampled_from(["0" * 32 + "\n", "A" * 32, "0" * 31, "0" * 16 + "\n", "f" * 16])
    | st.sampled_from([*KINDS, "session.nope", "fault.toxic_added", "experiment.phase"])
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@st.composite
def malformed(draw: st.DrawFn) -> dict[str, Any]:
    ev = draw(session_event())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        how = draw(st.sampled_from(["drop", "add", "set"]))
        key = draw(st.sampled_from(sorted(ev)))
        if how == "drop":
            ev.pop(key, None)
        elif how == "add":
            ev[draw(st.sampled_from(["extra", "Kind", "seq", "origin_seq", "level"]))] = draw(JUNK)
        else:
            ev[key] = draw(JUNK)
    return ev


def typed(events: Any, generated_ids: bool = False) -> list[tuple[str, list[tuple[type, Any]]]]:
    """Each event's class and its field values with their exact types. ``generated_ids``:
    pydantic makes up a fresh ``event_id`` for an event without one; compare only its type."""
    out = []
    for ev in events:
        if isinstance(ev, msgspec.Struct):
            values = dict(zip(ev.__struct_fields__, msgspec.structs.astuple(ev), strict=True))
        else:
            values = dict(ev.__dict__)
        if generated_ids:
            values["event_id"] = "<generated>"
        out.append((type(ev).__qualname__, [(type(v), v) for v in values.values()]))
    return out


def record(items: list[dict[str, Any]]) -> tuple[bytes, dict[str, bytes]]:
    # The standard library's encoder writes integers beyond 64 bits; orjson refuses them.
    value = codec.join_batch([json.dumps(i, ensure_ascii=False).encode() for i in items])
    return value, dict(codec.headers_for(len(items)))


def outcome(
    decode: Any, value: bytes, headers: dict[str, bytes], generated_ids: bool = False
) -> tuple[str, Any]:
    try:
        return "ok", typed(decode(value, headers), generated_ids)
    except DecodeError as exc:
        return "error", str(exc)


def reference(value: bytes, headers: dict[str, bytes]) -> list[Any]:
    return [analysis_form(e) for e in codec.decode_batch(value, headers)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(session_event(), min_size=1, max_size=6))
def test_valid_records_take_the_fast_path_and_equal_pydantic(items: list[dict[str, Any]]) -> None:
    value, headers = record(items)
    fast = fast_decode(value, headers)
    assert fast is not None
    assert typed(fast) == typed(reference(value, headers))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(malformed() | session_event(), min_size=1, max_size=4))
def test_malformed_records_decode_or_fail_exactly_as_pydantic(items: list[dict[str, Any]]) -> None:
    value, headers = record(items)
    ids = any("event_id" not in i for i in items)
    expected = outcome(reference, value, headers, ids)
    assert outcome(decode_record, value, headers, ids) == expected
    if fast_decode(value, headers) is not None:
        assert expected[0] == "ok"


VALID = orjson.dumps(next(iter(synthetic_events(1))).__dict__)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" + VALID + b"]",
        b" [" + VALID + b"] ",
        b"[" + VALID + b"]x",
        b"[" + VALID[:-1] + b',"seq":1.0}]',
        b"[" + VALID[:-1] + b',"bytes":true}]',
        b"[" + VALID[:-1] + b',"bytes":NaN}]',
        b"[" + VALID[:-1] + b',"bytes":1e999}]',
        b"[" + VALID.replace(b'"ws"', b'"WS"') + b"]",
        b"[" + VALID.replace(b'"session"', b'"s\\u0065ssion"') + b"]",
        b"[" + VALID.replace(b'"trace_id":null', b'"trace_id":"' + b"0" * 32 + b'\\n"') + b"]",
        b'[{"kind":"session.send"}]',
        b"{}",
        b"[]",
        b"[1]",
        b"not json",
        b"[" + VALID.replace(b'"s', b'"\xff', 1) + b"]",
    ],
)
def test_byte_level_edge_cases(payload: bytes) -> None:
    headers = dict(codec.headers_for(1, codec.Compression.NONE))
    assert outcome(decode_record, payload, headers) == outcome(reference, payload, headers)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        (codec.HEADER_SCHEMA, b"%d" % (SCHEMA_VERSION + 1)),
        (codec.HEADER_SCHEMA, b"01"),
        (codec.HEADER_FORMAT, b"x"),
        (codec.HEADER_FORMAT, b"0"),
        (codec.HEADER_CODEC, b"lz4"),
    ],
)
def test_headers_other_than_ours_go_through_the_codec(name: str, version: bytes) -> None:
    value, headers = record([orjson.loads(VALID)])
    headers[name] = version
    assert fast_decode(value, headers) is None
    assert outcome(decode_record, value, headers) == outcome(reference, value, headers)


def test_other_kinds_are_decoded_by_pydantic_into_the_same_form() -> None:
    events = list(synthetic_events(400, fault_every_s=0.02, fault_for_s=0.01))
    assert {"fault.toxic_added", "fault.toxic_removed", "session.error"} <= {e.kind for e in events}
    env = codec.encode_envelope("x", events)
    headers = dict(env.headers)
    assert fast_decode(env.value, headers) is None
    assert typed(decode_record(env.value, headers)) == typed(reference(env.value, headers))


OTHER_KINDS = [
    encode_event(e)
    for e in synthetic_events(400, fault_every_s=0.02, fault_for_s=0.01)
    if not e.kind.startswith("session.")
][:6]
BROKEN = [b"", b"not json", b"{}", b"[]", b"1},{", VALID[:-1], VALID + b",", b"\xff", VALID + VALID]


def _reference_each(encoded: list[bytes]) -> tuple[list[Any], int]:
    out, invalid = [], 0
    for data in encoded:
        try:
            out.append(analysis_form(parse_event(data)))
        except ValueError:
            invalid += 1
    return out, invalid


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        session_event().map(lambda i: json.dumps(i, ensure_ascii=False).encode())
        | malformed().map(lambda i: json.dumps(i, ensure_ascii=False).encode())
        | st.sampled_from(OTHER_KINDS)
        | st.sampled_from(BROKEN),
        max_size=8,
    )
)
def test_encoded_events_decode_as_pydantic_decodes_each(encoded: list[bytes]) -> None:
    """What the live analysis decodes from a run's fan-out: batches of single events' bytes,
    any mix of kinds, valid or not, give each event's pydantic value in order."""
    ids = any(b'"event_id"' not in data for data in encoded)
    got, invalid = decode_events(encoded)
    want, want_invalid = _reference_each(encoded)
    assert (typed(got, ids), invalid) == (typed(want, ids), want_invalid)


def test_a_run_of_session_events_is_decoded_as_one_batch() -> None:
    events = list(synthetic_events(300, fault_every_s=0.02, fault_for_s=0.01))
    encoded = [encode_event(e) for e in events]
    got, invalid = decode_events(encoded)
    assert invalid == 0
    assert len(got) == len(events)
    assert typed(got) == typed(_reference_each(encoded)[0])
    sessions = [d for d, e in zip(encoded, events, strict=True) if e.kind.startswith("session.")]
    assert all(isinstance(e, msgspec.Struct) for e in decode_events(sessions)[0])
