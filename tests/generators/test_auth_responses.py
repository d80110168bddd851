"""Token responses from the system under test: whatever a login answers, over a real loopback
HTTP server, the auth manager hands out the token of a well-formed answer or raises AuthError
(recorded as a LoginFailed session error). It takes no token it could not send back (one that is
not printable ASCII) and none it would refresh over and over (one that expires at once, or at no
number)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from generators.auth import AuthManager
from generators.clock import SystemClock
from generators.errors import AuthError
from generators.recorder import Recorder
from schemas.events import Protocol, SessionError
from schemas.load import AuthFlow
from spine.eventlog import MemorySink
from tests.loopback import close_accepted

WHO = ("acme", "acme-u0", "acme-u0-s0")


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


async def _login(status: int, body: bytes) -> tuple[str | AuthError, MemorySink]:
    """Log in against a server that answers the login with ``status`` and ``body`` (and any
    logout with 204); the token, or the error, and the events recorded."""
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(head))
                if head.startswith(b"POST /auth/login "):
                    writer.write(
                        b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (status, len(body))
                    )
                    writer.write(body)
                else:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = MemorySink()  # validates every event against its schema
    recorder = Recorder(
        sink, experiment_id="e", run_id="r", generator_id="g", target="gw", protocol=Protocol.WS
    )
    flow = AuthFlow(base_url=f"http://127.0.0.1:{port}", refresh_before_s=0)
    auth = AuthManager(flow, recorder, SystemClock(), timeout_s=5)
    try:
        async with asyncio.timeout(10):
            try:
                got: str | AuthError = await auth.token(WHO)
            except AuthError as exc:
                got = exc
            await auth.aclose()
    finally:
        server.close()
        await close_accepted(writers)
        await server.wait_closed()
    return got, sink


def well_formed(status: int, body: bytes) -> str | None:
    """The token a login answer gives, per the flow's contract; None if it gives none."""
    if not 200 <= status < 300 or status == 204:  # 204: no content, so no token
        return None
    try:
        data = json.loads(body, parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(token := data.get("access_token"), str):
        return None
    if not token or not all("!" <= c <= "~" for c in token):
        return None
    ttl = data.get("expires_in_s")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        return None
    return token


NASTY: list[Any] = [None, True, False, 0, -1, -0.5, 1e-9, 3, 300.5, "300", [], {}, "tok", ""]
answers = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "access_token": st.sampled_from(NASTY) | st.text(max_size=8),
            "refresh_token": st.sampled_from(NASTY),
            "expires_in_s": st.sampled_from(NASTY)
            | st.floats(allow_nan=False, allow_infinity=False),
        },
    ).map(lambda d: json.dumps(d).encode()),
    st.sampled_from(
        [
            b'{"access_token": "t", "expires_in_s": NaN}',
            b'{"access_token": "t", "expires_in_s": Infinity}',
            b'{"access_token": "t", "expires_in_s": 1e400}',
            b"[" * 5000,
            b"[]",
            b'"t"',
            b"",
        ]
    ),
    st.binary(max_size=60),
)


@settings(max_examples=40, deadline=None)
@given(status=st.sampled_from([200, 201, 204, 302, 401, 500]), body=answers)
@example(status=200, body=b'{"access_token": "t", "expires_in_s": -5, "refresh_token": "r"}')
@example(status=200, body=b'{"access_token": "t", "expires_in_s": NaN, "refresh_token": "r"}')
@example(status=200, body=b"[" * 100_000)
@example(status=200, body=b'{"access_token": "t", "expires_in_s": 30, "refresh_token": "r"}')
def test_a_login_answer_gives_its_token_or_an_auth_error(status: int, body: bytes) -> None:
    got, sink = asyncio.run(_login(status, body))
    want = well_formed(status, body)
    errors = [e for e in sink.events if isinstance(e, SessionError)]
    if want is None:
        assert isinstance(got, AuthError)
        assert [(e.error_class, e.phase) for e in errors] == [("LoginFailed", "auth")]
    else:
        assert got == want
        assert errors == []
