"""The sends of one tick, written to their connections together once the tick's Python work is
done.

Writing each message as soon as its session had stamped it interleaved socket writes with the
Python work of the next sessions: every write wakes the peer, which on a two-core machine is
often placed on this core and preempts the generator — about one involuntary context switch per
two messages in the 1,000 × 5 msg/s benchmark, and a peer woken once per message. Written in
one tight pass at the end of the tick, the peer wakes about once per tick.

Nothing else runs between a session queueing a send and the flush (both happen inside one
synchronous ticker callback), so for the engines here a connection open when the session
checked it is still open when written. An engine whose send fails anyway gets the session's
:meth:`Unsent.unsent` call, which records that the message never left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from generators.errors import ConnectionLost

if TYPE_CHECKING:
    from collections.abc import Callable

    from generators.engines.base import Connection


class Unsent(Protocol):
    def unsent(self, seq: int) -> None:
        """The message ``seq`` queued by this sender could not be written."""


Queued = tuple["Unsent", "Connection", str, int, "str | None"]
"""(sender, connection, frame, seq, traceparent)"""


class Outbox:
    __slots__ = ("_queued", "put")

    def __init__(self) -> None:
        self._queued: list[Queued] = []
        self.put: Callable[[Queued], None] = self._queued.append
        """Queue one message ``(sender, connection, frame, seq, traceparent)``; it is written
        at the next :meth:`flush`. The list's own ``append``: no Python call per message."""

    def __len__(self) -> int:
        return len(self._queued)

    def flush(self) -> None:
        """Write every queued message, in the order queued."""
        queued = self._queued
        try:
            for sender, conn, frame, seq, traceparent in queued:
                try:
                    conn.send(frame, seq, traceparent)
                except ConnectionLost:
                    sender.unsent(seq)
        finally:
            queued.clear()
