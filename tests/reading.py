"""Reading a test's events back from Kafka: wait for the events, not for a quiet spell.

``EventReader.read(idle_timeout_s=...)`` stops once nothing arrived for that long; on a busy
machine a fresh consumer can take longer than that to get its first records, and a test then
sees half its events. :func:`read_events` waits until the expected number arrived.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.events import Event
    from spine.eventlog.reader import EventReader


async def read_events(
    reader: EventReader, n: int, *, then_idle_s: float | None = None, timeout_s: float = 60.0
) -> list[Event]:
    """The next ``n`` events, however long a busy broker takes (up to ``timeout_s``); with
    ``then_idle_s``, also whatever follows until nothing arrives for that long (so a test can
    see extras, and the reader has counted the duplicates among them)."""
    got: list[Event] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < n:
            got += await reader.read(max_events=n - len(got), idle_timeout_s=0.5)
        if then_idle_s is not None:
            got += await reader.read(idle_timeout_s=then_idle_s)
    return got
