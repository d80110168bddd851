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
    frame this client does not track) or ``invalid`` (not understood: not a JSON object, or an
    echo or message without its string ``data`` or a message without its ``channel``; a frame
    corrupted in transit). Decoding never raises: whatever a server sends is one of these."""
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
            # The protocol's data is a string, and a channel message names its channel: a frame
            # without them (a key garbled in transit) is not understood. Taken as unstamped
            # data, it would hide the corruption; a message without its channel would be
            # judged as one sent to this user alone (an isolation violation).
            if not isinstance(data, str) or (op == "message" and not isinstance(channel, str)):
                return Incoming("invalid", frame, None)
            return Incoming(op, data, channel if isinstance(channel, str) else None)
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
