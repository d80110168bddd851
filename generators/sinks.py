"""The event sink the generator CLI adds to the ones in :mod:`spine.eventlog`: it takes encoded
events (:class:`~spine.eventlog.EncodedEventSink`) and only counts them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.events import Event


class CountingSink:
    """Drops events, counting them (for dry runs and benchmarks of the load path alone)."""

    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, event: Event) -> None:
        self.emitted += 1

    def emit_encoded(self, key: str, data: bytes) -> None:
        self.emitted += 1
