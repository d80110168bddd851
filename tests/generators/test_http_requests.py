"""The bytes the HTTP engine writes are well-formed HTTP/1.1 for every request a profile can
ask for: parsed back by llhttp's request parser they give the method, path, headers and body
asked for. Paths that could not go into a request line are refused by the schema, naming the
field."""

from __future__ import annotations

import random

import pytest
from httptools import HttpRequestParser
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from generators.engines.http import _Mix
from schemas.load import HttpRequestSpec, LoadProfile

PATH_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
PATHS = st.builds(lambda rest: "/" + rest, st.text(PATH_CHARS, max_size=40))
TOKENS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=1, max_size=12)
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip)


class Seen:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=PATHS,
    headers=st.dictionaries(TOKENS.filter(lambda t: t not in ("host",)), VALUES, max_size=3),
    data=st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), max_size=60),
    traceparent=st.none() | st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
)
def test_every_request_parses_back_to_what_was_asked(
    method: str, path: str, headers: dict[str, str], data: str, traceparent: str | None
) -> None:
    spec = HttpRequestSpec(name="r", method=method, path=path)  # type: ignore[arg-type]
    mix = _Mix([spec], random.Random(1))
    mix.set_headers("127.0.0.1:8080", headers)
    wire = mix.request(data, traceparent) * 2  # two in a row: the first must end exactly
    seen = Seen()
    parser = HttpRequestParser(seen)
    parser.feed_data(wire)
    assert seen.complete == 2
    assert parser.get_method() == method.encode()
    assert seen.url == (path.encode() * 2)
    got = dict(seen.headers[: len(seen.headers) // 2])
    assert got[b"host"] == b"127.0.0.1:8080"
    for name, value in headers.items():
        assert got[name.encode()] == value.encode()
    assert got.get(b"traceparent") == (traceparent.encode() if traceparent else None)
    with_body = method in ("POST", "PUT", "PATCH")
    assert seen.body == (data.encode() * 2 if with_body else b"")


@pytest.mark.parametrize(
    "path", ["echo", "/a b", "/a\r\nX-Injected: 1", "/tab\there", "", "/\x7f", "/caf\xe9", "/\xa0"]
)
def test_a_path_that_cannot_go_into_a_request_line_is_refused(path: str) -> None:
    with pytest.raises(ValidationError) as err:
        LoadProfile.model_validate(
            {
                "target": "api",
                "tenants": [{"name": "t", "users": 1}],
                "http_mix": [{"name": "x", "path": path}],
            }
        )
    assert "http_mix.0.path" in str(err.value)


@pytest.mark.parametrize(
    ("connect", "where"),
    [
        ({"mode": "request", "path": "no-slash"}, "http.connect.request.path"),
        ({"mode": "request", "expect_status": [99]}, "http.connect.request.expect_status.0"),
        ({"mode": "request", "method": "HEAD"}, "http.connect.request.method"),
        ({"mode": "udp"}, "http.connect"),
    ],
)
def test_bad_connect_choices_are_refused_naming_the_field(
    connect: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError) as err:
        LoadProfile.model_validate(
            {
                "target": "api",
                "tenants": [{"name": "t", "users": 1}],
                "http": {"connect": connect},
            }
        )
    assert where in str(err.value)


def test_pipelining_is_bounded() -> None:
    base = {"target": "api", "tenants": [{"name": "t", "users": 1}]}
    for bad in (0, 65):
        with pytest.raises(ValidationError, match=r"http\.pipelining"):
            LoadProfile.model_validate({**base, "http": {"pipelining": bad}})
    assert LoadProfile.model_validate({**base, "http": {"pipelining": 8}}).http.pipelining == 8


@pytest.mark.parametrize(
    "headers", [{"Authorization": "Bearer a\r\nX-Injected: 1"}, {"X-A": "b\nc"}, {"X:Y": "z"}]
)
def test_a_header_that_would_break_the_framing_is_refused(headers: dict[str, str]) -> None:
    mix = _Mix([HttpRequestSpec(name="r")], random.Random(1))
    with pytest.raises(ValueError, match="cannot be sent"):
        mix.set_headers("h:1", headers)
