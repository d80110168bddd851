"""The one interface producers of events depend on.

Generators, the injector and the fault proxy call :meth:`EventSink.emit`, which must never
block the caller's loop. The Kafka publisher implements it; :class:`MemorySink` is the
in-process implementation for embedding and for tests of producers. A sink that also
implements :class:`EncodedEventSink` takes events already encoded, so a busy producer need not
build a model per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

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
