"""JSON the way Toxiproxy's Go server writes and reads it.

Clients compare bodies byte for byte, so floats are formatted like Go's ``encoding/json``
(``1`` not ``1.0``; toxicity is a float32), ``<``, ``>`` and ``&`` are escaped, and decode
errors read like the Go decoder's (``bad request body: <detail>``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from decimal import Decimal

from injector.proxy.errors import BadRequest
from spine.text import utf8_safe


class Float32(float):
    """A float that is encoded as Go encodes a ``float32`` (shortest float32 round-trip)."""


def _shortest_float32(value: float) -> str:
    (target,) = struct.unpack("f", struct.pack("f", value))
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
            return text
    return repr(target)


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f' or 'e', -1, bits)`` as ``encoding/json`` picks it."""
    if not math.isfinite(value):
        raise ValueError(f"cannot encode {value!r} as JSON")
    shortest = _shortest_float32(value) if isinstance(value, Float32) else repr(float(value))
    magnitude = abs(float(shortest))
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, _, exponent = f"{float(shortest):e}".partition("e")
        digits = shortest.lower().partition("e")[0]
        if "e" not in shortest.lower():
            digits = mantissa.rstrip("0").rstrip(".")
        exp = int(exponent)
        return f"{digits}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    text = format(Decimal(shortest), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _string(value: str) -> str:
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


JsonValue = None | bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"]


def _encode(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(value: object) -> bytes:
    """Compact JSON, formatted as Go's ``json.Marshal`` formats it."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


class Number(float):
    """A JSON number that is not an int64: a fraction, an exponent, or an integer out of
    range. It keeps its literal, as Go's errors quote it (``cannot unmarshal number 1e999``);
    its value may be infinite, which every field check refuses."""

    literal: str

    def __new__(cls, literal: str) -> Number:
        number = super().__new__(cls, float(literal))
        number.literal = literal
        return number


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _parse_int(literal: str) -> int | Number:
    # Python refuses int() of more than 4300 digits; Go refuses anything past int64 anyway.
    if len(literal) <= 20:
        value = int(literal)
        if _INT64[0] <= value <= _INT64[1]:
            return value
    return Number(literal)


class _Constant(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``, which Python's decoder accepts and Go's does not."""


def _refuse_constant(name: str) -> object:
    raise _Constant(name)


_DECODER = json.JSONDecoder(
    parse_float=Number, parse_int=_parse_int, parse_constant=_refuse_constant
)


def _replace_surrogates(value: object) -> object:
    """Go's decoder turns an escaped surrogate without its pair into U+FFFD."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def decode(body: bytes) -> object:
    """Decode the first JSON value of ``body`` like Go's ``json.Decoder`` (trailing data ignored).

    No ``NaN`` or ``Infinity``; an escaped lone surrogate becomes U+FFFD; integers outside int64
    and every number with a fraction or exponent come back as :class:`Number`. Raises
    :class:`BadRequest` with a Go-style detail.
    """
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest.body(f"invalid UTF-8 at offset {exc.start}") from exc
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise BadRequest.body("EOF")
    try:
        value, _ = _DECODER.raw_decode(stripped)
    except _Constant as exc:
        name = str(exc)
        where = "in numeric literal" if name.startswith("-") else "looking for beginning of value"
        raise BadRequest.body(f"invalid character {name.lstrip('-')[0]!r} {where}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest.body(_go_syntax_detail(stripped, exc)) from exc
    except RecursionError as exc:
        raise BadRequest.body("exceeded max depth") from exc
    if "\\u" in stripped:
        value = _replace_surrogates(value)
    return value


def _go_syntax_detail(text: str, exc: json.JSONDecodeError) -> str:
    if exc.pos >= len(text):
        return "unexpected EOF"
    char = text[exc.pos]
    if exc.msg.startswith("Expecting value"):
        return f"invalid character {char!r} looking for beginning of value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {char!r} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {char!r} after object key"
    if exc.msg.startswith("Expecting ','"):
        where = "object key:value pair" if exc.msg.endswith("delimiter") else "array element"
        return f"invalid character {char!r} after {where}"
    return f"invalid character {char!r} at offset {exc.pos}: {exc.msg}"


def json_type(value: object) -> str:
    """The JSON type word Go's decoder uses in ``cannot unmarshal <type>`` messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Number):
        return f"number {value.literal}"
    if isinstance(value, int | float):
        return f"number {format_float(value) if isinstance(value, float) else value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


FLOAT32_LIMIT = 3.4028235677973366e38
"""Magnitudes from here up overflow a float32 (smaller ones round to at most its maximum)."""


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_error(value: object, where: str, go_type: str) -> BadRequest:
    """``bad request body: json: cannot unmarshal <type> into Go <where> of type <go_type>``."""
    kind = json_type(value)
    if kind.startswith("number") and go_type.startswith(("float", "int", "uint")):
        pass
    elif kind.startswith("number"):
        kind = "number"
    return BadRequest.body(f"json: cannot unmarshal {kind} into Go {where} of type {go_type}")


def field(obj: Mapping[str, object], name: str) -> tuple[bool, object]:
    """Look a key up the way Go's decoder matches struct fields: exact, else case-insensitive."""
    if name in obj:
        return True, obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return True, value
    return False, None
