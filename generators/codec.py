"""What a session says over a connection: the application protocol on top of an engine.

``ChatCodec`` speaks the JSON operations of the sample chat gateway (subscribe / echo / publish);
``RawCodec`` sends the stamp itself (raw TCP line echo, HTTP echo bodies) and treats whatever
comes back as an echo. Stamps are JSON-safe by construction, so frames are built by string
concatenation instead of a JSON encoder.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import orjson


class Incoming(NamedTuple):
    op: str
    """``echo``, ``message`` (broadcast), ``subscribed``, ``error``, ``other`` (a well-formed
    frame this client does not track) or ``invalid`` (unparseable: corrupted in transit)."""
    data: str
    channel: str | None


class Codec(Protocol):
    supports_broadcast: bool
    supports_subscribe: bool

    def subscribe(self, channels: tuple[str, ...]) -> str: ...

    def echo(self, stamp: str) -> str: ...

    def publish(self, channel: str, stamp: str) -> str: ...

    def decode(self, frame: str) -> Incoming: ...


class ChatCodec:
    supports_broadcast = True
    supports_subscribe = True

    def subscribe(self, channels: tuple[str, ...]) -> str:
        return orjson.dumps({"op": "subscribe", "channels": list(channels)}).decode()

    def echo(self, stamp: str) -> str:
        return '{"op":"echo","data":"' + stamp + '"}'

    def publish(self, channel: str, stamp: str) -> str:
        return (
            '{"op":"publish","channel":'
            + orjson.dumps(channel).decode()
            + ',"data":"'
            + stamp
            + '"}'
        )

    def decode(self, frame: str) -> Incoming:
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return Incoming("invalid", frame, None)
        if not isinstance(msg, dict):
            return Incoming("invalid", frame, None)
        op = msg.get("op")
        if op == "echo" or op == "message":
            data = msg.get("data")
            channel = msg.get("channel")
            return Incoming(
                op,
                data if isinstance(data, str) else frame,
                channel if isinstance(channel, str) else None,
            )
        if op == "subscribed":
            return Incoming("subscribed", "", None)
        if op == "error":
            return Incoming("error", f"{msg.get('code', '')}: {msg.get('message', '')}", None)
        return Incoming("other", frame, None)


class RawCodec:
    supports_broadcast = False
    supports_subscribe = False

    def subscribe(self, channels: tuple[str, ...]) -> str:
        raise NotImplementedError("raw connections have no channels")

    def echo(self, stamp: str) -> str:
        return stamp

    def publish(self, channel: str, stamp: str) -> str:
        raise NotImplementedError("raw connections cannot broadcast")

    def decode(self, frame: str) -> Incoming:
        return Incoming("echo", frame, None)
