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
from spine.errors import DecodeError
from spine.eventlog import codec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from analyzers.core.events import Fed

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
