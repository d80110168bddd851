"""An event sink that appends JSON lines to a file (one event per line, flushed per event).

Handy as a local event log for ``aftershock injector run --events FILE`` and as a source for
``aftershock injector reap --events FILE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas.events import parse_event
from spine.eventlog.runlog import iter_run_events

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from schemas.events import Event
    from spine.eventlog import EventSink


class JsonlSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self.errors = 0

    def emit(self, event: Event) -> None:
        try:
            self._file.write(event.model_dump_json() + "\n")
            self._file.flush()
        except (OSError, ValueError):
            self.errors += 1  # a full disk must not break the run

    def close(self) -> None:
        self._file.close()


class TeeSink:
    """Emits every event to several sinks."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for s in self.sinks:
            s.emit(event)


def read_events(path: Path) -> Iterator[Event]:
    """Events from a JSON-lines file, or from a run's event log (a directory of zstd batches,
    :mod:`spine.eventlog.runlog`); undecodable lines are skipped."""
    if path.is_dir():
        yield from iter_run_events(path)
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield parse_event(line)
            except ValidationError:
                continue
