"""Frames from the system under test, decoded: whatever a server sends is one of the documented
kinds and never an exception, a frame breaking the chat protocol is "invalid" (corrupted), and a
session records each frame as what it is, over a real WebSocket, and carries on."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import serve

from generators.codec import ChatCodec, Incoming, RawCodec
from generators.runner import Generator, GeneratorOptions
from generators.stamp import Stamper, experiment_key, verify
from schemas.events import Disconnect, Receive, SessionError
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

KINDS = {"echo", "message", "subscribed", "error", "other", "invalid"}
KEY = experiment_key("e")
STAMP = Stamper(KEY, "acme", "acme-u9", "acme-u9-s0").stamp(3, 1_700_000_000_000_000_000, 80)
"""Another session's stamp: in a run, a frame carrying it is a receipt, never a round trip."""
CHANNEL_STAMP = Stamper(KEY, "acme", "acme-u9", "acme-u9-s0").stamp(
    4, 1_700_000_000_000_000_000, 80, channel="general"
)
"""The same session's stamp of a message it published to ``general`` (its MAC covers that)."""
GENUINE = [
    ChatCodec().echo(STAMP),
    ChatCodec().publish("general", CHANNEL_STAMP).replace('"publish"', '"message"'),
]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # orjson's range; beyond it a frame is not understood
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
ABSENT = object()
field = st.one_of(st.just(ABSENT), st.text(max_size=20), json_value)
protocol_frames = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["echo", "message", "subscribed", "error", "publish"]) | json_value,
        "data": field,
        "channel": field,
        "code": field,
        "message": field,
        "extra": json_value,
    },
).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})


def _edited(frame: str, at: int, how: int, char: str) -> str:
    """``frame`` with one character replaced, removed or inserted at ``at``."""
    i = at % (len(frame) + 1)
    if how == 0 and i < len(frame):
        return frame[:i] + char + frame[i + 1 :]
    if how == 1:
        return frame[:i] + frame[i + 1 :]
    return frame[:i] + char + frame[i:]


mutated_frames = st.builds(
    _edited,
    st.sampled_from(GENUINE),
    st.integers(0, 10_000),
    st.integers(0, 2),
    st.characters(codec="utf-8"),
)
any_frame = st.one_of(
    st.text(),
    json_value.map(json.dumps),
    protocol_frames.map(json.dumps),
    mutated_frames,
)


def expected(doc: dict[str, Any], frame: str) -> Incoming | None:
    """What the chat protocol (docs/sample.md) makes of a JSON object; None for an error frame
    (its text is the server's)."""
    op, data, channel = doc.get("op"), doc.get("data"), doc.get("channel")
    if op == "echo" and isinstance(data, str):
        return Incoming("echo", data, channel if isinstance(channel, str) else None)
    if op == "message" and isinstance(data, str) and isinstance(channel, str):
        return Incoming("message", data, channel)
    if op in ("echo", "message"):
        return Incoming("invalid", frame, None)
    if op == "subscribed":
        return Incoming("subscribed", "", None)
    if op == "error":
        return None
    return Incoming("other", frame, None)


@settings(max_examples=500)
@given(any_frame)
@example("[" * 5000)  # deeper than the parser goes
@example('{"op":"echo","data":"\\ud800"}')  # a lone surrogate escaped
@example('{"op":"echo","data":1e999}')
def test_any_frame_decodes_to_a_documented_kind(frame: str) -> None:
    got = ChatCodec().decode(frame)
    assert got.op in KINDS
    assert isinstance(got.data, str)
    assert got.channel is None or isinstance(got.channel, str)
    if got.op in ("invalid", "other"):
        assert (got.data, got.channel) == (frame, None)
    assert RawCodec().decode(frame) == Incoming("echo", frame, None)


@settings(max_examples=300)
@given(protocol_frames, st.booleans())
def test_protocol_frames_decode_to_their_fields(doc: dict[str, Any], ascii_only: bool) -> None:
    frame = json.dumps(doc, ensure_ascii=ascii_only)
    got = ChatCodec().decode(frame)
    want = expected(doc, frame)
    if want is None:
        assert got.op == "error"
    else:
        assert got == want


@settings(max_examples=500)
@given(mutated_frames)
def test_a_frame_changed_in_transit_is_not_taken_for_what_it_is_not(frame: str) -> None:
    """One character of a genuine echo or channel message changed, removed or added: the frame
    is read with its own data (never the whole frame as if it were data), a channel message
    keeps a channel, and a stamp that still checks (on the channel it arrived on, as a session
    checks it) is the one sent, on the channel it was sent to."""
    got = ChatCodec().decode(frame)
    if got.op in ("echo", "message"):
        assert got.data != frame
        origin = verify(KEY, got.data, got.channel)
        if origin is not None and origin.checksum_ok:
            assert (got.data, got.channel) in ((STAMP, None), (CHANNEL_STAMP, "general"))
    if got.op == "message":
        assert got.channel is not None


def _frames_of_a_run(frames: list[str]) -> tuple[MemorySink, Any]:
    """One session sends one echo over a real WebSocket; the server answers it with ``frames``,
    then with the echo itself."""

    async def answer(ws: ServerConnection) -> None:
        async for sent in ws:
            for frame in frames:
                await ws.send(frame)
            await ws.send(sent)

    async def run() -> tuple[MemorySink, Any]:
        async with serve(answer, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            prof = profile(
                tenants=[{"name": "acme", "users": 1}],
                script=[{"do": "connect"}, {"do": "send", "count": 1}, {"do": "disconnect"}],
            )
            target = Target(name="gw", upstream=f"127.0.0.1:{port}", protocol="ws", path="/")
            sink = MemorySink()  # validates every event against its schema
            gen = Generator(prof, target, sink, GeneratorOptions(experiment_id="e"))
            async with asyncio.timeout(20):
                stats = await gen.run()
            return sink, stats

    return asyncio.run(run())


@settings(max_examples=25, deadline=None)
@given(st.lists(any_frame, max_size=6))
@example(['{"op":"echo","dbta":"A1|x"}', '{"op":"message","data":"x"}', "{", '{"op":"error"}'])
@example([json.dumps({"op": "message", "channel": "", "data": STAMP})])  # not the channel signed
def test_a_session_records_each_frame_as_what_it_is(frames: list[str]) -> None:
    sink, stats = _frames_of_a_run(frames)
    decoded = [ChatCodec().decode(f) for f in frames]
    receives = [e for e in sink.events if isinstance(e, Receive)]
    errors = [e for e in sink.events if isinstance(e, SessionError)]
    # Each frame as it is, in order; then the echo of what was sent, matched to it.
    data = [d for d in decoded if d.op in ("invalid", "echo", "message")]
    assert len(receives) == len(data) + 1
    failed = 0
    for event, d in zip(receives, data, strict=False):
        assert event.seq is None
        if d.op == "invalid":
            assert (event.checksum_ok, event.origin_tenant, event.channel) == (False, None, None)
            failed += 1
        else:
            origin = verify(KEY, d.data, d.channel)  # as the session checks it
            assert event.checksum_ok == (None if origin is None else origin.checksum_ok)
            assert event.channel == d.channel
            failed += event.checksum_ok is False
    own = receives[-1]
    assert (own.seq, own.origin_session, own.checksum_ok) == (1, "acme-u0-s0", True)
    assert (stats.round_trips, stats.checksum_failures) == (1, failed)
    server_errors = sum(d.op == "error" for d in decoded)
    assert [e.error_class for e in errors] == ["ServerError"] * server_errors
    assert [(e.by, e.reason) for e in sink.events if isinstance(e, Disconnect)] == [("client", "")]
