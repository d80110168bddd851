"""Client frames of the WebSocket protocol: parsing with errors that say what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .config import NAME_RE
from .errors import BadFrame

MAX_CHANNELS_PER_SUBSCRIBE = 64


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Echo:
    data: str


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: str


Op = Subscribe | Echo | Publish


def parse(text: str) -> Op:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadFrame("bad_json", f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise BadFrame("bad_frame", "frame must be a JSON object")
    op = frame.get("op")
    if op == "echo":
        return Echo(_data(frame, "echo"))
    if op == "publish":
        return Publish(
            _channel(frame.get("channel"), 'publish: "channel"'), _data(frame, "publish")
        )
    if op == "subscribe":
        channels = frame.get("channels")
        if not isinstance(channels, list) or not channels:
            raise BadFrame("bad_field", 'subscribe: "channels" must be a non-empty list')
        if len(channels) > MAX_CHANNELS_PER_SUBSCRIBE:
            raise BadFrame(
                "bad_field",
                f'subscribe: "channels" has {len(channels)} entries, '
                f"at most {MAX_CHANNELS_PER_SUBSCRIBE} allowed",
            )
        names = (_channel(c, f'subscribe: "channels"[{i}]') for i, c in enumerate(channels))
        return Subscribe(tuple(dict.fromkeys(names)))
    if not isinstance(op, str):
        raise BadFrame("bad_field", 'frame needs a string "op"')
    raise BadFrame("unknown_op", f'unknown op "{op[:64]}"; expected subscribe, echo or publish')


def _data(frame: dict[str, object], op: str) -> str:
    data = frame.get("data")
    if not isinstance(data, str):
        raise BadFrame("bad_field", f'{op}: "data" must be a string')
    return data


def _channel(value: object, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise BadFrame("bad_field", f"{where} must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def reply(op: str, **fields: object) -> bytes:
    return orjson.dumps({"op": op, **fields})


def error(code: str, message: str) -> bytes:
    return orjson.dumps({"op": "error", "code": code, "message": message})
