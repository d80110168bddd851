"""The wire format: one Kafka record carries an ordered batch of events sharing a partition key.

A record's value is a JSON array of event objects, compressed (zstd by default); its headers
name the envelope format, the compression and the schema version. Encoding goes straight
from the frozen models' field values through orjson (no ``model_dump``); decoding validates
with pydantic, which stays the schema of record. See ``docs/eventlog.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import orjson
import zstandard
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.base import SCHEMA_VERSION
from schemas.events import Event, EventAdapter, FaultEventBase, SessionEventBase
from schemas.results import ResultBase
from spine.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENVELOPE_VERSION: Final = 1
HEADER_FORMAT: Final = "aftershock-envelope"
HEADER_CODEC: Final = "aftershock-codec"
HEADER_SCHEMA: Final = "aftershock-schema-version"
HEADER_COUNT: Final = "aftershock-count"
HEADER_ERROR: Final = "aftershock-error"
MAX_DECODED_BYTES: Final = 64 * 1024 * 1024
"""A record that inflates beyond this is rejected (protects readers from a bad record)."""

_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


class Compression(StrEnum):
    ZSTD = "zstd"
    NONE = "none"


Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One Kafka record's worth of events, encoded."""

    key: bytes
    value: bytes
    headers: Headers
    count: int
    timestamp_ms: int | None = None
    """The record's timestamp (when the publisher sealed it; a re-send keeps it), or None for
    the producer's clock at send."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item of a batch that did not validate; ``raw`` is its JSON text."""

    index: int
    raw: bytes
    error: str


@dataclass(frozen=True, slots=True)
class Decoded:
    events: list[Event]
    rejected: list[Rejected]


_events_adapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
_compressor = zstandard.ZstdCompressor(level=1)
_decompressor = zstandard.ZstdDecompressor()


def _default(obj: object) -> object:
    if isinstance(obj, BaseModel):
        return obj.__dict__
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_batch(events: Sequence[Event], compression: Compression = Compression.ZSTD) -> bytes:
    """The record value for ``events``, in order: a compressed JSON array of their fields.

    Frozen models keep exactly their fields in ``__dict__``; orjson writes them (and nested
    models, via ``_default``) as JSON without building intermediate dicts.
    """
    return _compress(orjson.dumps([e.__dict__ for e in events], default=_default), compression)


def encode_event(event: Event) -> bytes:
    """One event as the JSON object :func:`encode_batch` writes for it, byte for byte."""
    return orjson.dumps(event.__dict__, default=_default)


def join_batch(items: Sequence[bytes], compression: Compression = Compression.ZSTD) -> bytes:
    """The record value for events already encoded one by one (:func:`encode_event`, or a
    producer writing exactly those bytes): the same bytes :func:`encode_batch` makes."""
    return _compress(b"[" + b",".join(items) + b"]", compression)


def _compress(payload: bytes, compression: Compression) -> bytes:
    if compression is Compression.ZSTD:
        return _compressor.compress(payload)
    return payload


def headers_for(count: int, compression: Compression = Compression.ZSTD) -> Headers:
    return (
        (HEADER_FORMAT, b"%d" % ENVELOPE_VERSION),
        (HEADER_CODEC, compression.value.encode()),
        (HEADER_SCHEMA, b"%d" % SCHEMA_VERSION),
        (HEADER_COUNT, b"%d" % count),
    )


def _envelope(key: str, value: bytes, count: int, compression: Compression) -> Envelope:
    return Envelope(key.encode(), value, headers_for(count, compression), count)


def encode_envelope(
    key: str, events: Sequence[Event], compression: Compression = Compression.ZSTD
) -> Envelope:
    return _envelope(key, encode_batch(events, compression), len(events), compression)


def encoded_envelope(
    key: str, items: Sequence[bytes], compression: Compression = Compression.ZSTD
) -> Envelope:
    """:func:`encode_envelope` for events already encoded one by one."""
    return _envelope(key, join_batch(items, compression), len(items), compression)


def partition_key(event: Event) -> str:
    """The key (hence partition) an event travels under; events of one key stay in order.

    Session events: ``<experiment>/<target>/<tenant>`` (a session's events share it);
    fault and proxy events: ``<experiment>/proxy/<proxy>``; results:
    ``<experiment>/result/<scope>/<scope_key>``; experiment lifecycle: ``<experiment>/experiment``.
    """
    if isinstance(event, SessionEventBase):
        return f"{event.experiment_id}/{event.target}/{event.tenant}"
    if isinstance(event, FaultEventBase):
        return f"{event.experiment_id}/proxy/{event.proxy}"
    if isinstance(event, ResultBase):
        return f"{event.experiment_id}/result/{event.scope}/{event.scope_key}"
    return f"{event.experiment_id}/experiment"


def _header(headers: Mapping[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("ascii", "replace")


def decompress(value: bytes, headers: Mapping[str, bytes] | None = None) -> bytes:
    """The JSON payload of a record value; the codec comes from the headers or the magic."""
    codec = _header(headers or {}, HEADER_CODEC)
    if codec is None:
        codec = Compression.ZSTD if value.startswith(_ZSTD_MAGIC) else Compression.NONE
    if codec == Compression.NONE:
        return value
    if codec != Compression.ZSTD:
        raise DecodeError(f"unknown compression {codec!r} in header {HEADER_CODEC}")
    try:
        return _decompressor.decompress(value, max_output_size=MAX_DECODED_BYTES)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"zstd payload is corrupt: {exc}") from exc


def _check_versions(headers: Mapping[str, bytes]) -> None:
    for name, supported in ((HEADER_FORMAT, ENVELOPE_VERSION), (HEADER_SCHEMA, SCHEMA_VERSION)):
        text = _header(headers, name)
        if text is None:
            continue
        if not text.isdigit():
            raise DecodeError(f"header {name} is {text!r}, not a version number")
        if int(text) > supported:
            raise DecodeError(
                f"header {name} is {text}, newer than this reader understands ({supported})"
            )


def decode(value: bytes, headers: Mapping[str, bytes] | None = None) -> Decoded:
    """Decode a record into its valid events plus the items that did not validate.

    Raises :class:`DecodeError` when the record as a whole is unreadable (bad compression,
    not a JSON array, unsupported version).
    """
    hdrs = headers or {}
    _check_versions(hdrs)
    payload = decompress(value, hdrs)
    try:
        return Decoded(_events_adapter.validate_json(payload), [])
    except ValidationError:
        pass  # find which items are bad, keep the good ones
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"payload is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise DecodeError(f"payload is a JSON {type(items).__name__}, not an array of events")
    events: list[Event] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(items):
        try:
            events.append(EventAdapter.validate_python(item))
        except ValidationError as exc:
            error = f"item {i}: " + "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            rejected.append(Rejected(i, orjson.dumps(item), error))
    return Decoded(events, rejected)


def decode_batch(value: bytes, headers: Mapping[str, bytes] | None = None) -> list[Event]:
    """Every event of a record, in order; raises :class:`DecodeError` if any is invalid."""
    decoded = decode(value, headers)
    if decoded.rejected:
        raise DecodeError(
            f"{len(decoded.rejected)} invalid event(s) in batch; first: {decoded.rejected[0].error}"
        )
    return decoded.events
