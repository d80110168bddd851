"""Per-connection subscription slots, recycled through a free list.

A slot is the routing context of one WebSocket connection: the tenant its subscriptions and
publishes are filed under. Slots are reused last-in first-out, so in a reconnect storm the
slot a client just left goes straight to the next client that connects.

This is where the ``isolation`` defect lives: a slot released less than ``slot_warm_s`` ago is
"warm", and the defective warm-reuse path keeps the tenant binding cached in the slot instead
of binding the new occupant's tenant. It only bites when connections churn faster than
``slot_warm_s``; then a session is routed as another tenant and receives its messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import Bug, Defects

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(eq=False, slots=True)
class Slot:
    index: int
    tenant: str = ""
    channels: set[str] = field(default_factory=set)
    released_at: float = float("-inf")


class SlotTable:
    def __init__(
        self, defects: Defects, *, warm_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._defects = defects
        self._warm_s = warm_s
        self._clock = clock
        self._free: list[Slot] = []
        self._size = 0

    def acquire(self, tenant: str) -> Slot:
        if self._free:
            slot = self._free.pop()
        else:
            slot = Slot(self._size)
            self._size += 1
        warm = self._clock() - slot.released_at < self._warm_s
        if not (warm and self._defects.enabled(Bug.ISOLATION)):
            slot.tenant = tenant
        # else: the defect — a warm slot keeps whatever tenant its previous occupant had.
        return slot

    def release(self, slot: Slot) -> None:
        slot.channels.clear()
        slot.released_at = self._clock()
        self._free.append(slot)

    @property
    def size(self) -> int:
        """Slots ever allocated (in use plus free)."""
        return self._size
