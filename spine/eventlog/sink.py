"""The one interface producers of events depend on.

Generators, the injector and the fault proxy call :meth:`EventSink.emit`, which must never
block the caller's loop. The Kafka publisher implements it; :class:`MemorySink` is the
in-process implementation for embedding and for tests of producers; :class:`JsonlSink` writes
JSON lines and :class:`Fanout` sends one stream to several sinks. A sink that also
implements :class:`EncodedEventSink` takes events already encoded, so a busy producer need not
build a model per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from schemas.events import parse_event
from spine.eventlog.codec import encode_event, partition_key

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from schemas.events import Event


@runtime_checkable
class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Accept one event for delivery. Never blocks; never raises for delivery problems."""


@runtime_checkable
class EncodedEventSink(EventSink, Protocol):
    def emit_encoded(self, key: str, data: bytes) -> None:
        """Accept one event given as its wire bytes: exactly what
        :func:`spine.eventlog.codec.encode_event` returns for a valid event, to travel
        under ``key`` (its :func:`~spine.eventlog.codec.partition_key`). The sink trusts
        the producer; same guarantees as :meth:`EventSink.emit`."""


class MemorySink:
    """Keeps every event in a list, in emit order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of_kind(self, *kinds: str) -> Sequence[Event]:
        return [e for e in self.events if e.kind in kinds]


class JsonlSink:
    """Appends events as JSON lines to a file (``--events FILE``; ``aftershock export`` reads
    the same format back). Lines are written every ``batch`` events and on :meth:`flush` /
    :meth:`close` (``batch=1``: each at once, so a crash loses nothing already emitted). A
    write that fails (a full disk) is counted in ``errors`` and never breaks the producer."""

    def __init__(self, path: Path, batch: int = 1) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO | None = path.open("ab")
        self._buf: list[bytes] = []
        self._batch = max(1, batch)
        self.emitted = 0
        self.errors = 0

    def emit(self, event: Event) -> None:
        self.emit_encoded("", encode_event(event))

    def emit_encoded(self, key: str, data: bytes) -> None:
        self._buf.append(data + b"\n")
        self.emitted += 1
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._file is None or not self._buf:
            return
        try:
            self._file.write(b"".join(self._buf))
            self._file.flush()
        except (OSError, ValueError):
            self.errors += len(self._buf)
        self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class Fanout:
    """One stream to several sinks, each event encoded once and built once: sinks that take
    encoded events (``logs``: Kafka's publisher, a local log, a JSON-lines file, the run's live
    analysis) get its bytes as they are; the others (``sinks``) get the model, parsed once.
    Itself an :class:`EncodedEventSink`, so a producer that encodes its own events (the generators)
    hands them over as bytes."""

    def __init__(self, *sinks: EventSink) -> None:
        self.logs: list[EncodedEventSink] = []
        self.sinks: list[EventSink] = []
        for sink in sinks:
            self.add(sink)

    def add(self, sink: EventSink) -> None:
        if isinstance(sink, EncodedEventSink):
            self.logs.append(sink)
        else:
            self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        if self.logs:
            key, data = partition_key(event), encode_event(event)
            for log in self.logs:
                log.emit_encoded(key, data)
        for s in self.sinks:
            s.emit(event)

    def emit_encoded(self, key: str, data: bytes) -> None:
        for log in self.logs:
            log.emit_encoded(key, data)
        if self.sinks:
            event = parse_event(data)
            for s in self.sinks:
                s.emit(event)
