"""Go-compatible JSON: float formatting and decode error details."""

from __future__ import annotations

import pytest

from injector.proxy.errors import BadRequest
from injector.proxy.gojson import Float32, decode, encode


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
