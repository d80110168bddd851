"""The publisher's local log: every envelope it seals, on disk before it goes to Kafka.

Each publisher owns one directory ``<root>/<pid>-<random>/`` (held with an exclusive
``flock``), holding ``<first seq>.seg`` segment files of frames and ``acked.json``::

    frame  = b"ASJ1" | u32 body length | u32 crc32(body) | body
    body   = u64 seq | u64 timestamp ms (0: none) | u16 key length | key | u16 header count
             | (u16 name length | name | u32 value length | value) * count
             | u32 event count | value

Frames carry consecutive sequence numbers. ``acked.json`` holds the *watermark* (every frame up
to it was acknowledged by the broker), per partition the highest offset the broker gave an
acknowledged record, and the broker's cluster id: what the publisher checks the broker against
to notice that it lost data.

Acknowledged frames are kept (``retain_bytes``, oldest segments go first) so that what a broker
loses after acknowledging it can be sent again; a frame dropped by that bound is counted in
:attr:`Journal.forgotten_events`. A clean close after everything was acknowledged and checked
deletes the directory.

When it opens, a journal adopts the directories of publishers that are gone (their lock is
free): their acknowledged frames are kept as acknowledged ones, their unacknowledged frames are
queued after them, and their partition offsets join the ones to check. A torn frame at the end
of a segment (a crash mid-write) is skipped with everything after it in that segment.

Writes go straight to the operating system (no user-space buffer), so ``kill -9`` of the
process loses nothing written; ``fsync_interval_s`` bounds what a machine crash can lose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from spine.errors import SpoolError
from spine.eventlog.codec import Envelope

if TYPE_CHECKING:
    from pathlib import Path

_MAGIC = b"ASJ1"
_LEGACY = b"ASP1"
_FRAME = struct.Struct(">4sII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
SEGMENT_BYTES = 4 * 1024 * 1024
RETAIN_BYTES = 256 * 1024 * 1024
STATE_FILE = "acked.json"


def pack(seq: int, env: Envelope) -> bytes:
    """One frame: ``env`` under sequence number ``seq``."""
    parts = [
        _U64.pack(seq),
        _U64.pack(env.timestamp_ms or 0),
        _U16.pack(len(env.key)),
        env.key,
        _U16.pack(len(env.headers)),
    ]
    for name, value in env.headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw, _U32.pack(len(value)), value]
    parts += [_U32.pack(env.count), env.value]
    body = b"".join(parts)
    return _FRAME.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def unpack(body: bytes) -> tuple[int, Envelope]:
    view = memoryview(body)
    (seq,) = _U64.unpack_from(view, 0)
    (ts_ms,) = _U64.unpack_from(view, 8)
    (klen,) = _U16.unpack_from(view, 16)
    pos = 18
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
    env = Envelope(key, bytes(view[pos + 4 :]), tuple(headers), count, ts_ms or None)
    return seq, env


def read_frames(
    data: bytes, start: int = 0, *, legacy: bool = False
) -> tuple[list[tuple[int, Envelope]], bool]:
    """The frames of a segment's bytes numbered ``start`` or later, and whether the bytes
    ended in a torn (partly written) frame. With ``legacy``, the segment is one of the spool
    of earlier versions (``ASP1`` frames, no sequence number nor timestamp): its frames are
    numbered by their position, from 1."""
    magic_wanted = _LEGACY if legacy else _MAGIC
    out: list[tuple[int, Envelope]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _FRAME.size:
            return out, True
        magic, length, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if magic != magic_wanted or len(body) != length or zlib.crc32(body) != crc:
            return out, True
        if legacy:
            out.append((len(out) + 1, unpack(_U64.pack(0) * 2 + body)[1]))
        elif _U64.unpack_from(body)[0] >= start:
            out.append(unpack(body))
        pos += _FRAME.size + length
    return out, False


@dataclass(slots=True)
class _Segment:
    path: Path
    first: int
    last: int
    events: int = 0
    bytes: int = 0


class Journal:
    """Append at the tail, acknowledge in order, read back from any retained sequence number."""

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        retain_bytes: int = RETAIN_BYTES,
        fsync_interval_s: float | None = 0.1,
        owner: bytes | None = None,
    ) -> None:
        self.root = root
        self.owner = owner
        """Written to ``owner.json`` (who writes this log, for ``aftershock stack down``)."""
        self.segment_bytes = segment_bytes
        self.retain_bytes = retain_bytes
        self.fsync_interval_s = fsync_interval_s
        self.dir = root / f"{os.getpid()}-{os.urandom(4).hex()}"
        self._lock: BinaryIO | None = None
        self._segments: list[_Segment] = []
        self._tail: BinaryIO | None = None
        self._synced_at = 0.0
        self._unsynced = False
        self._state_dirty = False
        self.next_seq = 1
        self.watermark = 0
        """Every frame with a sequence number up to this one was acknowledged."""
        self.offsets: dict[int, int] = {}
        """Per partition, the highest offset of an acknowledged record."""
        self.cluster_id: str | None = None
        """The cluster id of the broker that acknowledged the frames up to the watermark."""
        self.unacked_events = 0
        self.retained_bytes = 0
        self.forgotten_events = 0
        """Acknowledged events dropped by ``retain_bytes`` (they cannot be sent again)."""
        self.torn_frames = 0
        self.adopted_events = 0
        self.write_failures = 0
        self._held: dict[int, Envelope] = {}
        """Envelopes that could not be written, by sequence number."""

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        try:
            # Locked before it gets its visible name, so nobody adopts it half-made.
            hidden = self.root / f".{self.dir.name}"
            hidden.mkdir(parents=True, exist_ok=False)
            self._lock = _lock(hidden)
            if self._lock is None:
                raise SpoolError(f"local log {hidden} is locked by another process")
            if self.owner is not None:
                (hidden / "owner.json").write_bytes(self.owner)
            self._write_state(hidden)  # present from the start: marks the current format
            hidden.rename(self.dir)
            self._adopt_orphans()
            self._write_state()
        except OSError as exc:
            raise SpoolError(f"cannot open the local log under {self.root}: {exc}") from exc

    def close(self, *, clean: bool) -> None:
        """Close files. ``clean`` (everything acknowledged and checked) deletes the directory;
        otherwise it stays for the next publisher on the topic to adopt."""
        self.sync(force=True)
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        if clean and self.watermark >= self.next_seq - 1:
            for path in self.dir.glob("*"):
                path.unlink()
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _adopt_orphans(self) -> None:
        acked: list[tuple[int, Envelope]] = []
        unacked: list[tuple[int, Envelope]] = []
        others = (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for other in sorted(p for p in others if p != self.dir):
            lock = _lock(other)
            if lock is None:
                continue  # its publisher is alive
            with lock:
                # Directories of earlier versions have no state file: their frames are "ASP1".
                legacy = not (other / STATE_FILE).exists()
                watermark, offsets, cluster_id = _read_state(other)
                if cluster_id is not None:
                    self.cluster_id = cluster_id
                for p, off in offsets.items():
                    self.offsets[p] = max(self.offsets.get(p, -1), off)
                for seg in sorted(other.glob("*.seg")):
                    frames, torn = read_frames(seg.read_bytes(), legacy=legacy)
                    self.torn_frames += torn
                    for seq, env in frames:
                        (acked if seq <= watermark else unacked).append((seq, env))
                for path in other.glob("*"):
                    path.unlink()
                with contextlib.suppress(OSError):
                    other.rmdir()
        for _, env in acked:
            self.append(env)
        self.watermark = self.next_seq - 1
        self.unacked_events = 0
        for _, env in unacked:
            self.append(env)
        self.adopted_events = sum(e.count for _, e in acked + unacked)
        self.sync(force=True)

    # --- writing ------------------------------------------------------------------------------

    def append(self, env: Envelope) -> int:
        """Write ``env`` as the next frame; returns its sequence number.

        Raises :class:`SpoolError` when it cannot be written; the envelope is then held in
        memory under its number (reading still finds it) and the next append starts a new
        segment.
        """
        seq = self.next_seq
        self.next_seq += 1
        frame = pack(seq, env)
        try:
            if self._tail is None or self._segments[-1].bytes + len(frame) > self.segment_bytes:
                self._roll(seq)
            assert self._tail is not None
            self._tail.write(frame)
        except OSError as exc:
            self.write_failures += 1
            self._held[seq] = env
            self.unacked_events += env.count
            if self._tail is not None:
                with contextlib.suppress(OSError):
                    self._tail.close()
                self._tail = None
            raise SpoolError(f"cannot write the local log in {self.dir}: {exc}") from exc
        seg = self._segments[-1]
        seg.last = seq
        seg.events += env.count
        seg.bytes += len(frame)
        self.unacked_events += env.count
        self._unsynced = True
        if self.fsync_interval_s == 0:
            self.sync(force=True)
        return seq

    def _roll(self, seq: int) -> None:
        if self._tail is not None:
            self._tail.close()
        path = self.dir / f"{seq:020d}.seg"
        self._tail = open(path, "ab", buffering=0)  # noqa: SIM115 (kept open across appends)
        self._segments.append(_Segment(path, seq, seq - 1))

    def ack(self, seq: int, count: int, partition: int, offset: int) -> None:
        """The broker acknowledged frame ``seq`` (``count`` events) at ``partition``/``offset``.

        Frames are acknowledged in sequence order; a frame acknowledged again (a re-send) only
        updates the offsets.
        """
        if offset > self.offsets.get(partition, -1):
            self.offsets[partition] = offset
        if seq == self.watermark + 1:
            self.watermark = seq
            self.unacked_events -= count
            self._held.pop(seq, None)
            self._prune()
        self._state_dirty = True

    def record_offset(self, partition: int, offset: int) -> None:
        if offset > self.offsets.get(partition, -1):
            self.offsets[partition] = offset
            self._state_dirty = True

    def set_cluster_id(self, cluster_id: str | None) -> None:
        if cluster_id != self.cluster_id:
            self.cluster_id = cluster_id
            self._state_dirty = True

    def reset_offsets(self) -> None:
        """The broker lost data: forget its offsets (they start again from what it has now)."""
        self.offsets = {}
        self._state_dirty = True

    def take_forgotten(self) -> int:
        """Acknowledged events no longer retained since the last call (they cannot be sent
        again)."""
        n, self.forgotten_events = self.forgotten_events, 0
        return n

    def _prune(self) -> None:
        """Drop the oldest fully acknowledged segments beyond ``retain_bytes``."""
        total = sum(s.bytes for s in self._segments)
        while (
            len(self._segments) > 1
            and total > self.retain_bytes
            and self._segments[0].last <= self.watermark
        ):
            seg = self._segments.pop(0)
            total -= seg.bytes
            self.forgotten_events += seg.events
            with contextlib.suppress(OSError):
                seg.path.unlink()
        self.retained_bytes = total

    def sync(self, *, force: bool = False) -> None:
        """fsync the tail and write the acknowledgement state, if due (``fsync_interval_s``)."""
        now = time.monotonic()
        if not force and (
            self.fsync_interval_s is None or now - self._synced_at < self.fsync_interval_s
        ):
            return
        self._synced_at = now
        try:
            if self._unsynced and self._tail is not None and self.fsync_interval_s is not None:
                os.fsync(self._tail.fileno())
            self._unsynced = False
            if self._state_dirty:
                self._write_state()
        except OSError as exc:
            self.write_failures += 1
            raise SpoolError(f"cannot sync the local log in {self.dir}: {exc}") from exc

    def _write_state(self, directory: Path | None = None) -> None:
        directory = directory or self.dir
        tmp = directory / f".{STATE_FILE}"
        offsets = {str(p): o for p, o in self.offsets.items()}
        state = {"watermark": self.watermark, "offsets": offsets, "cluster_id": self.cluster_id}
        tmp.write_bytes(json.dumps(state).encode())
        os.replace(tmp, directory / STATE_FILE)
        self._state_dirty = False

    # --- reading ------------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The oldest retained sequence number (``next_seq`` when nothing is retained)."""
        return self._segments[0].first if self._segments else self.next_seq

    def retained_acked_events(self) -> int:
        return sum(s.events for s in self._segments) - self.unacked_events

    def read(self, start: int, max_bytes: int) -> list[tuple[int, Envelope]]:
        """Frames from sequence number ``start`` on, in order, about ``max_bytes`` of values
        (at least one frame when there is one)."""
        out: list[tuple[int, Envelope]] = []
        size = 0
        for seg in self._segments:
            if seg.last < start:
                continue
            try:
                data = seg.path.read_bytes()
            except OSError as exc:
                raise SpoolError(f"cannot read the local log {seg.path}: {exc}") from exc
            frames, torn = read_frames(data, start)
            self.torn_frames += torn
            for frame in frames:
                out.append(frame)
                size += len(frame[1].value)
                if size >= max_bytes:
                    break
            if size >= max_bytes:
                break
        if self._held:
            last = out[-1][0] if size >= max_bytes and out else self.next_seq
            out += [(s, e) for s, e in self._held.items() if start <= s < last]
            out.sort(key=lambda frame: frame[0])
        return out

    def __bool__(self) -> bool:
        """True while some frame is not acknowledged."""
        return self.watermark < self.next_seq - 1


def _read_state(directory: Path) -> tuple[int, dict[int, int], str | None]:
    try:
        state = json.loads((directory / STATE_FILE).read_bytes())
        offsets = {int(p): int(o) for p, o in state["offsets"].items()}
        cluster = state.get("cluster_id")
        return int(state["watermark"]), offsets, cluster if isinstance(cluster, str) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0, {}, None  # unknown: everything is sent again


def _lock(directory: Path) -> BinaryIO | None:
    """An exclusive, non-blocking lock on ``directory/lock``; None if someone holds it."""
    handle = open(directory / "lock", "ab")  # noqa: SIM115 (held for the spool's lifetime)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
