"""Decoding records for the analyzers: straight into the analysis form when that is exact.

A record whose headers are the ones this version writes and whose events are all
``session.*`` events carrying every field in its exact JSON type is decoded by msgspec into
:mod:`analyzers.core.events` structs (about a fifth of the cost of pydantic models). Anything
else — another kind, a missing field, a value pydantic would coerce (``"1"`` for an int), an
invalid event, an unknown header — goes through :func:`spine.eventlog.codec.decode_batch`
unchanged, so what is accepted, what is rejected, the error raised and the values produced
are exactly those of the pydantic path (``tests/analyzers/test_decode.py`` checks this on
random and malformed input).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from analyzers.core.events import SessionEvent, analysis_form
from schemas.base import SCHEMA_VERSION
from schemas.events import parse_event
from spine.errors import DecodeError
from spine.eventlog import codec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from analyzers.core.events import Fed
    from schemas.events import Event

_decoder: Final = msgspec.json.Decoder(list[SessionEvent])
_PLAIN: Final = {
    codec.HEADER_FORMAT: b"%d" % codec.ENVELOPE_VERSION,
    codec.HEADER_SCHEMA: b"%d" % SCHEMA_VERSION,
}


def fast_decode(value: bytes, headers: Mapping[str, bytes]) -> list[SessionEvent] | None:
    """The record's events as structs, or None when the fast path cannot vouch for them."""
    for name, expected in _PLAIN.items():
        got = headers.get(name)
        if got is not None and got != expected:
            return None
    try:
        return _decoder.decode(codec.decompress(value, headers))
    except (msgspec.DecodeError, DecodeError, ValueError):
        # msgspec.ValidationError is a msgspec.DecodeError; invalid UTF-8 in a string raises
        # UnicodeDecodeError (a ValueError). The codec decides what such records are.
        return None


def decode_record(value: bytes, headers: Mapping[str, bytes]) -> Sequence[Fed]:
    """Every event of a record in its analysis form; raises :class:`DecodeError` exactly when
    :func:`spine.eventlog.codec.decode_batch` does, with its message."""
    fast = fast_decode(value, headers)
    if fast is not None:
        return fast
    return [analysis_form(ev) for ev in codec.decode_batch(value, headers)]


_one: Final = msgspec.json.Decoder(SessionEvent)


def decode_events(encoded: Sequence[bytes]) -> tuple[list[Fed], int]:
    """Events given as their wire bytes (each what :func:`spine.eventlog.codec.encode_event`
    writes), in their analysis form and in order, and how many were invalid (left out).

    Runs of session events are decoded by msgspec a run at a time (what a generator writes);
    an event the fast path cannot vouch for — another kind, a value only pydantic accepts, an
    invalid one — is decoded on its own by :func:`schemas.events.parse_event`, so every value
    is exactly the pydantic path's."""
    out = _decode_run(encoded)
    if out is not None:
        return out, 0
    out = []
    invalid = 0
    run: list[bytes] = []
    for data in encoded:
        if _SESSION_KIND in data:
            run.append(data)
            continue
        if run:
            invalid += _decode_each(run, out)
            run = []
        invalid += _decode_each([data], out)
    if run:
        invalid += _decode_each(run, out)
    return out, invalid


_SESSION_KIND: Final = b'"kind":"session.'
"""In the bytes of every session event, and of no other (inside a JSON string its quotes are
escaped): where a run of session events ends. A wrong guess costs time, never a value."""


def _decode_run(encoded: Sequence[bytes]) -> list[Fed] | None:
    """The events of ``encoded`` when all are session events msgspec decodes, else None."""
    if not encoded:
        return []
    try:
        got: list[Fed] = list(_decoder.decode(b"[" + b",".join(encoded) + b"]"))
    except (msgspec.DecodeError, ValueError):
        return None
    # A count that differs means bytes that were not one event each: decode them one by one.
    return got if len(got) == len(encoded) else None


def _decode_each(encoded: Sequence[bytes], out: list[Fed]) -> int:
    """Appends the events of ``encoded`` to ``out``; returns how many were invalid."""
    if len(encoded) > 1:
        got = _decode_run(encoded)
        if got is not None:
            out += got
            return 0
    invalid = 0
    for data in encoded:
        try:
            out.append(_one.decode(data))
            continue
        except (msgspec.DecodeError, ValueError):
            pass
        try:
            out.append(analysis_form(parse_event(data)))
        except ValueError:  # pydantic.ValidationError, also for invalid UTF-8
            invalid += 1
    return invalid


class Inbox:
    """An :class:`~spine.eventlog.EncodedEventSink` that keeps what it is handed, in emit
    order, until :meth:`take` gives it in the analysis form: the in-process analysis's end of
    a run's fan-out. Events emitted as bytes are decoded in batches by :func:`decode_events`
    (no model is built for a session event); models are taken as they are. Like every encoded
    sink it trusts its producers; an invalid event is left out and counted in ``invalid``."""

    def __init__(self) -> None:
        self._encoded: list[bytes] = []
        self._items: list[list[bytes] | Event] = [self._encoded]
        self.invalid = 0

    def emit(self, event: Event) -> None:
        self._items.append(event)
        self._encoded = []
        self._items.append(self._encoded)

    def emit_encoded(self, key: str, data: bytes) -> None:
        self._encoded.append(data)

    def take(self) -> list[Fed]:
        """Everything emitted since the last call, oldest first."""
        items = self._items
        self._encoded = []
        self._items = [self._encoded]
        out: list[Fed] = []
        for item in items:
            if isinstance(item, list):
                if item:
                    decoded, invalid = decode_events(item)
                    out += decoded
                    self.invalid += invalid
            else:
                out.append(analysis_form(item))
        return out
