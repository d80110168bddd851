"""A run's local event log: the events of one game day as zstd batches.

``<run_dir>/events/<20-digit first batch number>.seg`` segment files hold frames in the
publisher's local log format (:mod:`spine.eventlog.spool`): each frame is one record value of
the wire format (a zstd-compressed JSON array of events, :func:`~spine.eventlog.codec.join_batch`)
with its headers and count. A game day hands it its publisher's batches as they are sealed
(:meth:`RunLogWriter.write_batch`): the same batches as on Kafka, compressed once, in the order
sealed — emit order within a partition key, as on Kafka; across keys a batch waits at most the
publisher's durable window (the analyzers re-order by event time). The writer also takes events
as their wire bytes (:meth:`RunLogWriter.emit_encoded`) and seals a batch every
``batch_events`` events or ``window_s`` after its first event (a timer on the running loop),
whichever comes first; ``close()`` seals the rest. Appends are unbuffered writes: ``kill -9``
loses at most the open batch.

Readers (:func:`iter_run_events`, :func:`read_run_batches`) yield each ``event_id`` once, in
the order written; a torn frame at the end of a segment (a crash mid-write) ends that segment.
JSON lines come only from ``aftershock export``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, BinaryIO

import orjson

from spine.errors import DecodeError, EventFileError
from spine.eventlog.codec import (
    Compression,
    Envelope,
    decode_batch,
    decompress,
    encode_event,
    encoded_envelope,
)
from spine.eventlog.spool import pack, read_frames

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from schemas.events import Event

EVENTS_DIR = "events"
SEGMENT_BYTES = 64 * 1024 * 1024


class RunLogWriter:
    """An :class:`~spine.eventlog.EncodedEventSink` writing a run's local log. Never raises
    for a write error: it is counted in ``errors`` (a full disk must not break the run)."""

    def __init__(
        self,
        directory: Path,
        *,
        batch_events: int = 2000,
        window_s: float = 0.1,
        segment_bytes: int = SEGMENT_BYTES,
        compression: Compression = Compression.ZSTD,
    ) -> None:
        self.dir = directory
        self.batch_events = batch_events
        self.window_s = window_s
        self.segment_bytes = segment_bytes
        self.compression = compression
        self._items: list[bytes] = []
        self._first_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._file: BinaryIO | None = None
        self._file_bytes = 0
        self._seq = 0
        self.events = 0
        """Events written (sealed into a batch on disk)."""
        self.bytes = 0
        self.errors = 0
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True)

    def emit(self, event: Event) -> None:
        self.emit_encoded("", encode_event(event))

    def emit_encoded(self, key: str, data: bytes) -> None:
        if self._closed:
            return
        items = self._items
        items.append(data)
        if len(items) == 1:
            self._first_at = time.monotonic()
            with contextlib.suppress(RuntimeError):  # no loop: sealed by size and close()
                self._timer = asyncio.get_running_loop().call_later(self.window_s, self.seal)
        elif len(items) >= self.batch_events or (
            not len(items) & 63 and time.monotonic() - self._first_at > self.window_s
        ):
            self.seal()

    def seal(self) -> None:
        """Write the open batch (if any) as one frame."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, self._items = self._items, []
        self._write(encoded_envelope("", items, self.compression))

    def write_batch(self, env: Envelope) -> None:
        """Append a batch already encoded: a run hands its publisher's sealed batches here
        (:attr:`Publisher.on_sealed`), so its log holds the same zstd batches as Kafka,
        compressed once. Events gathered by :meth:`emit_encoded` are sealed first."""
        if self._closed:
            return
        if self._items:
            self.seal()
        self._write(env)

    def _write(self, env: Envelope) -> None:
        self._seq += 1
        frame = pack(self._seq, Envelope(b"", env.value, env.headers, env.count))
        try:
            if self._file is None or self._file_bytes + len(frame) > self.segment_bytes:
                self._roll()
            assert self._file is not None
            self._file.write(frame)
        except OSError:
            self.errors += env.count
            return
        self._file_bytes += len(frame)
        self.events += env.count
        self.bytes += len(frame)

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.dir / f"{self._seq:020d}.seg", "ab", buffering=0)  # noqa: SIM115
        self._file_bytes = 0

    def close(self) -> None:
        """Seal the open batch and close the segment. Idempotent."""
        if self._closed:
            return
        self.seal()
        self._closed = True
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def run_log_exists(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.seg"))


def read_run_batches(directory: Path) -> Iterator[list[Event]]:
    """The log's batches in the order written, each ``event_id`` once.

    Raises :class:`EventFileError` naming the segment when it cannot be read or a batch in it
    does not decode.
    """
    if not directory.is_dir():
        raise EventFileError(f"{directory} is not a run's event log (no such directory)")
    seen: set[str] = set()
    for seg in sorted(directory.glob("*.seg")):
        try:
            data = seg.read_bytes()
        except OSError as exc:
            raise EventFileError(f"cannot read {seg}: {exc.strerror}") from exc
        frames, _torn = read_frames(data)
        for seq, env in frames:
            try:
                events = decode_batch(env.value, dict(env.headers))
            except DecodeError as exc:
                raise EventFileError(f"{seg}: batch {seq}: {exc}") from exc
            fresh = []
            for ev in events:
                if ev.event_id not in seen:
                    seen.add(ev.event_id)
                    fresh.append(ev)
            if fresh:
                yield fresh


def iter_raw(directory: Path) -> Iterator[dict[str, object]]:
    """The log's events as plain JSON objects (not validated), each ``event_id`` once: for
    quick scans of a long log."""
    seen: set[str] = set()
    for seg in sorted(directory.glob("*.seg")):
        try:
            data = seg.read_bytes()
        except OSError as exc:
            raise EventFileError(f"cannot read {seg}: {exc.strerror}") from exc
        for seq, env in read_frames(data)[0]:
            try:
                items = orjson.loads(decompress(env.value, dict(env.headers)))
            except (DecodeError, orjson.JSONDecodeError) as exc:
                raise EventFileError(f"{seg}: batch {seq}: {exc}") from exc
            if not isinstance(items, list):
                raise EventFileError(f"{seg}: batch {seq}: not an array of events")
            for raw in items:
                if not isinstance(raw, dict):
                    raise EventFileError(f"{seg}: batch {seq}: an item is not an object")
                eid = raw.get("event_id")
                if isinstance(eid, str):
                    if eid in seen:
                        continue
                    seen.add(eid)
                yield raw


def iter_run_events(directory: Path) -> Iterator[Event]:
    """The log's events in the order written, each ``event_id`` once."""
    for batch in read_run_batches(directory):
        yield from batch
