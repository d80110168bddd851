"""Message integrity: loss, duplicates, reordering and corruption.

Every ``session.send`` that expects something back (echo, broadcast — the sender gets its own
copy — or response) is pending until the matching ``session.receive`` arrives at the sender
(matched on origin session and sequence number, or the receive's own ``seq`` when the message
carried no stamp). A session is known by its whole identity — run, generator, target and
session name (the analyzer is per experiment) — so load profiles, generators or runs that reuse
tenant and session names never answer each other's sends. A pending send whose
``reply_timeout_s`` passes (event time) is **lost**; a reply arriving after that is a **late
reply**, not a duplicate. Every receiving session keeps, per origin session (itself for its own
echoes, else the origin's name within the receiver's run and target: a stamp names no
generator), the highest sequence number seen and the recent ones below it: a sequence number
seen again is a **duplicate**, one below the highest is **reordered**. A receive whose stamp
checksum failed (``checksum_ok`` is False) is **corrupted**; its stamp is not trusted, so it
answers no pending send (which is then lost unless a good copy arrives). Each count is kept
overall, per target, per tenant and per fault active when the send (or receive) happened.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzers.core.events import Receive, Send, SessionError

Dim = tuple[str, str]
Dims = tuple[Dim, ...]
SessionKey = tuple[str, str, str, str]
"""(run, generator, target, session): who a session is within one experiment."""


def session_key(ev: Send | Receive | SessionError) -> SessionKey:
    return (ev.run_id, ev.generator_id, ev.target, ev.session)


_NEVER = 1 << 62
"""Later than any event time (ns)."""


@dataclass(slots=True)
class Counts:
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    late_replies: int = 0


@dataclass(slots=True)
class _Pending:
    t: int
    dims: Dims
    trace_id: str | None
    reported: bool = False


@dataclass(slots=True)
class _SeqTrack:
    """One origin's sequence numbers as a receiver saw them: the highest, and those of the
    ``reorder_window`` below it that have not arrived (messages come nearly in order, so this
    set is short and an in-order arrival touches no set)."""

    high: int = -1
    missing: set[int] = field(default_factory=set)


@dataclass
class Lost:
    t: int
    session: SessionKey
    seq: int
    dims: Dims
    reported: bool
    """The client already reported this message failed (a ``session.error`` naming its seq):
    its health was observed then, not again at the deadline."""


class IntegrityTracker:
    def __init__(self, timeout_ns: int, reorder_window: int) -> None:
        self._timeout_ns = timeout_ns
        self._window = reorder_window
        self.counts: dict[Dim, Counts] = {}
        self._pending: dict[tuple[SessionKey, int], _Pending] = {}
        self._deadlines: deque[tuple[int, SessionKey, int]] = deque()
        """(deadline, session, seq) of each send, in the order they were folded."""
        self._expired: dict[tuple[SessionKey, int], int] = {}
        self._expired_order: deque[tuple[int, tuple[SessionKey, int]]] = deque()
        self._tracks: dict[tuple[SessionKey, tuple[str, ...]], _SeqTrack] = {}
        self._by_dims: dict[Dims, list[Counts]] = {}
        self.next_due_ns = _NEVER
        """The earliest ``now`` at which :meth:`due` is true (asked per event, read directly)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reschedule()  # a snapshot written before next_due_ns existed

    def _reschedule(self) -> None:
        """Drops deadlines at the head whose send was answered (they can expire nothing),
        then sets when :meth:`expire` next has something to do."""
        deadlines = self._deadlines
        pending = self._pending
        timeout = self._timeout_ns
        while deadlines:
            deadline, session, seq = deadlines[0]
            p = pending.get((session, seq))
            if p is not None and p.t + timeout == deadline:
                break
            deadlines.popleft()
        order = self._expired_order
        due = deadlines[0][0] if deadlines else _NEVER
        if order:
            due = min(due, order[0][0] + 4 * self._timeout_ns + 1)
        self.next_due_ns = due

    def _counts(self, dims: Dims) -> list[Counts]:
        out = self._by_dims.get(dims)
        if out is not None:
            return out
        out = []
        table = self.counts
        for d in dims:
            c = table.get(d)
            if c is None:
                table[d] = c = Counts()
            out.append(c)
        self._by_dims[dims] = out
        return out

    def counts_for(self, dims: Dims) -> list[Counts]:
        """The counters of ``dims`` (made on first use): what :meth:`send` and :meth:`receive`
        count into, for a caller that keeps them at hand."""
        return self._counts(dims)

    def send(self, t: int, ev: Send, dims: Dims, counts: list[Counts] | None = None) -> None:
        """``counts``: ``counts_for(dims)``, when the caller has it at hand."""
        if counts is None:
            counts = self._by_dims.get(dims)
            if counts is None:
                counts = self._counts(dims)
        for c in counts:
            c.sent += 1
        if ev.expect == "none":
            return
        who = (ev.run_id, ev.generator_id, ev.target, ev.session)
        self._pending[(who, ev.seq)] = _Pending(t, dims, ev.trace_id)
        deadline = t + self._timeout_ns
        if not self._deadlines and deadline < self.next_due_ns:
            self.next_due_ns = deadline
        # (Not the pending key: a tuple per send kept alive here costs the collector.)
        self._deadlines.append((deadline, who, ev.seq))

    def trace_of(self, session: SessionKey, seq: int) -> str | None:
        p = self._pending.get((session, seq))
        return None if p is None else p.trace_id

    def due(self, now: int) -> bool:
        """Whether :meth:`expire` at ``now`` has anything to do (cheap: asked per event)."""
        return now >= self.next_due_ns

    def expire(self, now: int) -> list[Lost]:
        """Sends whose reply deadline is at or before ``now`` and still unanswered. A send
        expires at its own deadline only: one sent again under the same session and sequence
        number after the first was answered has a deadline of its own."""
        lost: list[Lost] = []
        deadlines = self._deadlines
        pending = self._pending
        timeout = self._timeout_ns
        while deadlines and deadlines[0][0] <= now:
            deadline, session, seq = deadlines.popleft()
            key = (session, seq)
            p = pending.get(key)
            if p is None or p.t + timeout != deadline:
                continue
            del pending[key]
            for c in self._counts(p.dims):
                c.lost += 1
            self._expired[key] = deadline
            self._expired_order.append((deadline, key))
            lost.append(Lost(deadline, session, seq, p.dims, p.reported))
        horizon = now - 4 * self._timeout_ns
        order = self._expired_order
        while order and order[0][0] < horizon:
            self._expired.pop(order.popleft()[1], None)
        self._reschedule()
        return lost

    def failed(self, ev: SessionError) -> None:
        """The client reported the message ``ev.seq`` failed (e.g. its own reply timeout)."""
        if ev.seq is not None:
            p = self._pending.get((session_key(ev), ev.seq))
            if p is not None:
                p.reported = True

    def receive(self, ev: Receive, dims: Dims, counts: list[Counts] | None = None) -> None:
        """``counts``: ``counts_for(dims)``, when the caller has it at hand."""
        if counts is None:
            counts = self._by_dims.get(dims)
            if counts is None:
                counts = self._counts(dims)
        if ev.checksum_ok is False:
            # A stamp that failed its checksum says nothing trustworthy about its origin.
            for c in counts:
                c.received += 1
                c.corrupted += 1
            return
        origin = ev.origin_session
        seq = ev.origin_seq
        if origin is None or seq is None:
            origin, seq = ev.session, ev.seq
        duplicate = reordered = late = False
        if seq is not None:
            who = (ev.run_id, ev.generator_id, ev.target, ev.session)
            own = origin == ev.session
            tkey = (who, who if own else (ev.run_id, ev.target, origin))
            track = self._tracks.get(tkey)
            if track is None:
                self._tracks[tkey] = track = _SeqTrack()
            high = track.high
            window = self._window
            if seq > high:
                if seq > high + 1:  # a gap: what it skipped, within the window, is missing
                    missing = track.missing
                    missing.update(range(max(high + 1, seq - window + 1), seq))
                    if len(missing) > window:
                        track.missing = {m for m in missing if m > seq - window}
                track.high = seq
            elif seq <= high - window:
                reordered = True  # too far below the highest to be told from a duplicate
            elif seq in track.missing:
                track.missing.discard(seq)
                reordered = True
            else:
                duplicate = True
            if own and not duplicate and self._pending.pop((who, seq), None) is None:
                late = self._expired.pop((who, seq), None) is not None
        for c in counts:
            c.received += 1
            if duplicate:
                c.duplicated += 1
            if reordered:
                c.reordered += 1
            if late:
                c.late_replies += 1

    @property
    def pending(self) -> int:
        return len(self._pending)
