"""Go-compatible JSON: float formatting and decode error details."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from injector.proxy.errors import BadRequest
from injector.proxy.gojson import Float32, Number, decode, encode


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, b"1"),
        (0.0, b"0"),
        (0.5, b"0.5"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-07"),
        (2.5e21, b"2.5e+21"),
        (123456789.0, b"123456789"),
        (Float32(0.1), b"0.1"),
        (Float32(0.3), b"0.3"),
        (Float32(1.0), b"1"),
    ],
)
def test_floats_like_go(value: float, text: bytes) -> None:
    assert encode(value) == text


def test_html_characters_escaped_and_order_kept() -> None:
    assert encode({"b": "<&>", "a": [True, None, 3]}) == (
        b'{"b":"\\u003c\\u0026\\u003e","a":[true,null,3]}'
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "EOF"),
        (b"   ", "EOF"),
        (b'{"a":', "unexpected EOF"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b"{x", "invalid character 'x' looking for beginning of object key string"),
        (b"\xff", "invalid UTF-8 at offset 0"),
    ],
)
def test_decode_errors(body: bytes, detail: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(body)
    assert caught.value.message == f"bad request body: {detail}"


def test_trailing_data_ignored_like_go_decoder() -> None:
    assert decode(b'{"a":1} trailing') == {"a": 1}


# -- properties ----------------------------------------------------------------------------------

TEXT = st.lists(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=6).map("".join)
"""Text that may hold lone surrogates, which Python strings can and JSON escapes can carry."""
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)


def _as_go(value: object) -> object:
    """What Go's decoder makes of it: every lone surrogate becomes U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, list):
        return [_as_go(v) for v in value]
    if isinstance(value, dict):
        return {_as_go(k): _as_go(v) for k, v in value.items()}
    return value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    return []


@given(JSON_VALUES)
def test_decode_reads_back_what_json_writes(value: object) -> None:
    """Any JSON an encoder writes decodes to the same value, except that lone surrogates
    become U+FFFD (an escaped pair still makes one character, as in Go)."""
    body = json.dumps(value)  # ASCII: surrogates travel as \\u escapes
    decoded = decode(body.encode())
    assert decoded == _as_go(json.loads(body))
    for text in _strings(decoded):
        text.encode()  # strict UTF-8: nothing the server stores can break an encoder


@given(st.binary(max_size=64))
def test_decode_of_any_bytes_is_a_value_or_a_400(body: bytes) -> None:
    message = None
    try:
        value = decode(body)
    except BadRequest as exc:
        message = exc.message
    if message is not None:
        assert message.startswith("bad request body: ")
        return
    for text in _strings(value):
        text.encode()


@given(
    st.sampled_from(["NaN", "Infinity", "-Infinity"]), st.sampled_from(['{"a":%s}', "[%s]", "%s"])
)
def test_non_finite_literals_are_refused(literal: str, shape: str) -> None:
    with pytest.raises(BadRequest):
        decode((shape % literal).encode())


@given(st.integers())
def test_integers_outside_int64_keep_their_literal(value: int) -> None:
    decoded = decode(str(value).encode())
    if -(1 << 63) <= value < (1 << 63):
        assert decoded == value
        assert type(decoded) is int
    else:
        assert isinstance(decoded, Number)
        assert decoded.literal == str(value)
