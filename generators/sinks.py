"""Event sinks the generator CLI adds to the ones in :mod:`spine.eventlog`; both take
encoded events (:class:`~spine.eventlog.EncodedEventSink`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from spine.eventlog.codec import encode_event

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event


class JsonlSink:
    """Appends events as JSON lines to a file, buffered (written every ``batch`` events)."""

    def __init__(self, path: Path, batch: int = 2000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO | None = path.open("ab")
        self._buf: list[bytes] = []
        self._batch = batch
        self.emitted = 0

    def emit(self, event: Event) -> None:
        self.emit_encoded("", encode_event(event))

    def emit_encoded(self, key: str, data: bytes) -> None:
        self._buf.append(data + b"\n")
        self.emitted += 1
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._file is not None and self._buf:
            self._file.write(b"".join(self._buf))
            self._buf.clear()
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class CountingSink:
    """Drops events, counting them (for dry runs and benchmarks of the load path alone)."""

    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, event: Event) -> None:
        self.emitted += 1

    def emit_encoded(self, key: str, data: bytes) -> None:
        self.emitted += 1
