"""The link between gateway and message service: length-prefixed JSON frames over TCP.

Each frame is a 4-byte big-endian length followed by that many bytes of one UTF-8 JSON object
whose ``"t"`` names the frame type (see ``docs/sample.md``). Writes are coalesced: frames sent
in one event-loop turn leave in one ``write`` call.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

import orjson

from .errors import BadFrame, LinkDown

if TYPE_CHECKING:
    from collections.abc import Mapping

HEADER = struct.Struct(">I")
WRITE_BUFFER_LIMIT = 32 << 20
"""A peer this far behind is treated as gone rather than buffered for without bound."""

Frame = dict[str, object]


def encode(frame: Mapping[str, object]) -> bytes:
    body = orjson.dumps(frame)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Frame:
    try:
        frame = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadFrame("bad_json", f"link frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        raise BadFrame("bad_frame", 'link frame must be a JSON object with a string "t"')
    return frame


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> Frame | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    body = await read_body(reader, max_bytes)
    return None if body is None else decode(body)


async def read_body(reader: asyncio.StreamReader, max_bytes: int) -> bytes | None:
    """The next frame's undecoded body, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionResetError("link closed inside a frame header") from exc
        return None
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise BadFrame("too_large", f"link frame of {size} bytes exceeds {max_bytes}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("link closed inside a frame") from exc
    return body


def text(frame: Frame, name: str) -> str:
    value = frame.get(name)
    if not isinstance(value, str):
        raise BadFrame("bad_field", f'link frame "{frame.get("t")}": "{name}" must be a string')
    return value


def integer(frame: Frame, name: str) -> int:
    value = frame.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadFrame("bad_field", f'link frame "{frame.get("t")}": "{name}" must be an integer')
    return value


def optional_text(frame: Frame, name: str) -> str | None:
    value = frame.get(name)
    return value if isinstance(value, str) else None


class FrameWriter:
    """Queues frames and writes everything queued in one event-loop turn at once."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: list[bytes] = []
        self._scheduled = False

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()

    def send(self, frame: Mapping[str, object]) -> None:
        if self._writer.is_closing():
            raise LinkDown("link is closed")
        self._pending.append(encode(frame))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        data, self._pending = b"".join(self._pending), []
        if self._writer.is_closing():
            return
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            self._writer.close()

    def close(self) -> None:
        self._flush()
        self._writer.close()
