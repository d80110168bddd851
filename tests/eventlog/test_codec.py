"""The wire codec: every kind survives encode → decode as an equal, validated pydantic model."""

from __future__ import annotations

import orjson
import pytest
import zstandard

from schemas.base import SCHEMA_VERSION
from schemas.events import EVENT_TYPES, EventAdapter, Send
from spine.errors import DecodeError
from spine.eventlog import codec
from spine.eventlog.codec import Compression
from tests.eventlog.samples import SESSION, every_kind, sample


def _headers(env: codec.Envelope) -> dict[str, bytes]:
    return dict(env.headers)


@pytest.mark.parametrize("compression", list(Compression))
def test_every_kind_round_trips_to_an_equal_model(compression: Compression) -> None:
    events = every_kind()
    assert {e.kind for e in events} == {t.model_fields["kind"].default for t in EVENT_TYPES}
    env = codec.encode_envelope("k", events, compression)
    back = codec.decode_batch(env.value, _headers(env))
    assert back == events
    assert [type(e) for e in back] == [type(e) for e in events]
    # The fast encoder writes exactly what pydantic itself would accept and produce.
    for raw, event in zip(orjson.loads(codec.decompress(env.value)), events, strict=True):
        assert EventAdapter.validate_python(raw) == event
        assert raw == orjson.loads(event.model_dump_json())


def test_headers_name_codec_schema_and_count() -> None:
    events = every_kind()
    env = codec.encode_envelope("exp/gw/acme", events)
    h = _headers(env)
    assert h[codec.HEADER_CODEC] == b"zstd"
    assert h[codec.HEADER_SCHEMA] == b"%d" % SCHEMA_VERSION
    assert h[codec.HEADER_COUNT] == str(len(EVENT_TYPES)).encode()
    assert env.value.startswith(b"\x28\xb5\x2f\xfd")
    # Without headers the codec is recognised from the payload.
    assert codec.decode_batch(env.value) == events


def test_order_is_kept() -> None:
    events = [sample(Send, seq=i, bytes=10) for i in range(500)]
    assert [e.seq for e in codec.decode_batch(codec.encode_batch(events))] == list(range(500))  # type: ignore[union-attr]


def test_partition_key_groups_a_tenants_sessions_per_target() -> None:
    send = sample(Send, seq=1, bytes=1)
    assert codec.partition_key(send) == f"exp-samples/{SESSION['target']}/{SESSION['tenant']}"
    keys = {codec.partition_key(e) for e in every_kind()}
    assert "exp-samples/proxy/redis" in keys
    assert "exp-samples/experiment" in keys
    assert "exp-samples/result/target/gateway" in keys


def test_invalid_items_are_rejected_by_index_and_the_rest_kept() -> None:
    good = every_kind()[:3]
    items = [orjson.loads(e.model_dump_json()) for e in good]
    items.insert(1, {**items[0], "kind": "session.teleport"})
    items.append({**items[0], "bytes": -1})
    decoded = codec.decode(zstandard.ZstdCompressor().compress(orjson.dumps(items)))
    assert decoded.events == good
    assert [r.index for r in decoded.rejected] == [1, 4]
    assert "session.teleport" in decoded.rejected[0].error
    assert "bytes" in decoded.rejected[1].error
    with pytest.raises(DecodeError, match="2 invalid"):
        codec.decode_batch(zstandard.ZstdCompressor().compress(orjson.dumps(items)))


@pytest.mark.parametrize(
    ("value", "headers", "match"),
    [
        (b"\x28\xb5\x2f\xfdgarbage", {}, "zstd payload is corrupt"),
        (b"{not json", {}, "not JSON"),
        (b'{"a": 1}', {}, "not an array"),
        (b"[]", {codec.HEADER_CODEC: b"brotli"}, "unknown compression 'brotli'"),
        (b"[]", {codec.HEADER_SCHEMA: b"99"}, "newer than this reader"),
        (b"[]", {codec.HEADER_FORMAT: b"v1"}, "not a version number"),
    ],
)
def test_unreadable_records_raise_decode_error_saying_why(
    value: bytes, headers: dict[str, bytes], match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        codec.decode(value, headers)


@pytest.mark.parametrize("compression", list(Compression))
def test_events_encoded_one_by_one_join_into_the_same_record(compression: Compression) -> None:
    events = every_kind()
    items = [codec.encode_event(e) for e in events]
    assert codec.join_batch(items, compression) == codec.encode_batch(events, compression)
    env = codec.encoded_envelope("k", items, compression)
    assert env == codec.encode_envelope("k", events, compression)
    assert codec.decode_batch(env.value, _headers(env)) == events
    assert [orjson.loads(i) for i in items] == [orjson.loads(e.model_dump_json()) for e in events]
