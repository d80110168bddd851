"""The publisher's disk spool: a FIFO of encoded envelopes in segment files.

Each publisher owns one directory ``<root>/<pid>-<random>/`` (held with an exclusive
``flock``), holding ``<seq>.seg`` files of frames::

    frame  = b"ASP1" | u32 body length | u32 crc32(body) | body
    body   = u16 key length | key | u16 header count
             | (u16 name length | name | u32 value length | value) * count
             | u32 event count | value

When it opens, a spool adopts the directories of publishers that are gone (their lock is
free), so what a crashed process spooled is delivered by the next one. A torn frame at the
end of a segment (a crash mid-write) is skipped with everything after it in that segment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from collections import deque
from typing import TYPE_CHECKING, BinaryIO

from spine.errors import SpoolError
from spine.eventlog.codec import Envelope

if TYPE_CHECKING:
    from pathlib import Path

_MAGIC = b"ASP1"
_FRAME = struct.Struct(">4sII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
SEGMENT_BYTES = 16 * 1024 * 1024


def pack(env: Envelope) -> bytes:
    parts = [_U16.pack(len(env.key)), env.key, _U16.pack(len(env.headers))]
    for name, value in env.headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw, _U32.pack(len(value)), value]
    parts += [_U32.pack(env.count), env.value]
    body = b"".join(parts)
    return _FRAME.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def unpack(body: bytes) -> Envelope:
    view = memoryview(body)
    (klen,) = _U16.unpack_from(view, 0)
    pos = 2
    key = bytes(view[pos : pos + klen])
    pos += klen
    (nh,) = _U16.unpack_from(view, pos)
    pos += 2
    headers = []
    for _ in range(nh):
        (nlen,) = _U16.unpack_from(view, pos)
        name = bytes(view[pos + 2 : pos + 2 + nlen]).decode()
        pos += 2 + nlen
        (vlen,) = _U32.unpack_from(view, pos)
        headers.append((name, bytes(view[pos + 4 : pos + 4 + vlen])))
        pos += 4 + vlen
    (count,) = _U32.unpack_from(view, pos)
    return Envelope(key=key, value=bytes(view[pos + 4 :]), headers=tuple(headers), count=count)


class Spool:
    """Append at the tail, read and pop at the head; fully read segments are deleted."""

    def __init__(self, root: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.root = root
        self.segment_bytes = segment_bytes
        self.dir = root / f"{os.getpid()}-{os.urandom(4).hex()}"
        self._lock: BinaryIO | None = None
        self._segments: deque[Path] = deque()
        # Segment names sort in FIFO order: appends count up, prepends count down.
        self._next_seq = 10**12
        self._prev_seq = 10**12 - 1
        self._tail: BinaryIO | None = None
        self._tail_bytes = 0
        self._head: deque[Envelope] = deque()
        self._head_segment: Path | None = None
        self.events = 0
        """Events currently in the spool."""
        self.torn_frames = 0
        self.adopted_segments = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        try:
            # Locked before it gets its visible name, so nobody adopts it half-made.
            hidden = self.root / f".{self.dir.name}"
            hidden.mkdir(parents=True, exist_ok=False)
            self._lock = _lock(hidden)
            if self._lock is None:
                raise SpoolError(f"spool {hidden} is locked by another process")
            hidden.rename(self.dir)
            self._adopt_orphans()
        except OSError as exc:
            raise SpoolError(f"cannot open the spool under {self.root}: {exc}") from exc

    def close(self) -> None:
        """Close files; an empty spool removes its directory, a non-empty one stays for the
        next publisher to adopt."""
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        if not self:
            for path in self.dir.glob("*"):
                path.unlink()
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _adopt_orphans(self) -> None:
        others = (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for other in sorted(p for p in others if p != self.dir):
            lock = _lock(other)
            if lock is None:
                continue  # its publisher is alive
            with lock:
                for seg in sorted(other.glob("*.seg")):
                    target = self.dir / f"{self._next_seq:020d}.seg"
                    self._next_seq += 1
                    os.replace(seg, target)
                    self._segments.append(target)
                    self.adopted_segments += 1
                for path in other.glob("*"):
                    path.unlink()
                with contextlib.suppress(OSError):
                    other.rmdir()
        for seg in self._segments:
            self.events += sum(e.count for e in _read_segment(seg)[0])

    # --- FIFO ---------------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self._head) or bool(self._segments)

    def append(self, env: Envelope) -> None:
        frame = pack(env)
        try:
            if self._tail is None or self._tail_bytes + len(frame) > self.segment_bytes:
                self._roll()
            assert self._tail is not None
            self._tail.write(frame)
            self._tail.flush()
        except OSError as exc:
            raise SpoolError(f"cannot write the spool in {self.dir}: {exc}") from exc
        self._tail_bytes += len(frame)
        self.events += env.count

    def prepend(self, envs: list[Envelope]) -> None:
        """Put ``envs`` (in their order) before everything already in the spool."""
        if not envs:
            return
        older = envs + list(self._head)
        path = self.dir / f"{self._prev_seq:020d}.seg"
        self._prev_seq -= 1
        try:
            with open(path, "wb") as f:
                f.write(b"".join(pack(env) for env in older))
        except OSError as exc:
            raise SpoolError(f"cannot write the spool in {self.dir}: {exc}") from exc
        self.events += sum(env.count for env in envs)
        self._head.clear()
        if self._head_segment is not None:
            self._head_segment.unlink()
            self._head_segment = None
        self._segments.appendleft(path)

    def peek(self) -> Envelope | None:
        """The oldest envelope, or None when the spool is empty."""
        while not self._head:
            if not self._segments:
                return None
            seg = self._segments[0]
            if self._tail is not None and self._segments[-1] == seg:
                self._tail.close()  # reading the segment being written: start a new one
                self._tail = None
            self._segments.popleft()
            envs, torn = _read_segment(seg)
            self._head.extend(envs)
            self.torn_frames += torn
            self._head_segment = seg
            self._drop_read_segment()
        return self._head[0]

    def pop(self) -> None:
        """Drop the oldest envelope (after it was delivered)."""
        if self.peek() is not None:
            self.events -= self._head.popleft().count
            self._drop_read_segment()

    def _drop_read_segment(self) -> None:
        """A segment is deleted only once all its envelopes are delivered: a crash before
        that re-sends them (duplicates, which readers drop) rather than losing them."""
        if not self._head and self._head_segment is not None:
            self._head_segment.unlink()
            self._head_segment = None

    def _roll(self) -> None:
        if self._tail is not None:
            self._tail.close()
        path = self.dir / f"{self._next_seq:020d}.seg"
        self._next_seq += 1
        self._tail = open(path, "ab")  # noqa: SIM115 (kept open across appends)
        self._tail_bytes = 0
        self._segments.append(path)


def _read_segment(path: Path) -> tuple[list[Envelope], bool]:
    """The envelopes of a segment, and whether it ended in a torn (partly written) frame."""
    data = path.read_bytes()
    out: list[Envelope] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _FRAME.size:
            return out, True
        magic, length, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
            return out, True
        out.append(unpack(body))
        pos += _FRAME.size + length
    return out, False


def _lock(directory: Path) -> BinaryIO | None:
    """An exclusive, non-blocking lock on ``directory/lock``; None if someone holds it."""
    handle = open(directory / "lock", "ab")  # noqa: SIM115 (held for the spool's lifetime)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
