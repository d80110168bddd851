"""One shared timer tick that drives every session's sends and expectation timeouts.

A sleeping task per session costs a timer-heap entry and a task wake-up per message; at 10k
sessions the loop spends its time there. Here sessions sit in a timing wheel keyed by tick
number, and each tick calls the due ones synchronously. The ticker wakes only for ticks with
something in them (a send due, or an expectation's deadline): a generator whose sessions are
idle costs no wake-ups.

Nothing per message is a container object: a wheel slot lists sessions (a session remembers the
one tick it is due at, so a stale entry is skipped), and expectation timeouts wait in one FIFO
per timeout length (deadline, session and seq in three parallel deques; deadlines of one length
arrive in order). Thousands of tuples living for seconds each were what kept the garbage
collector's oldest generation growing, and its full collections were the latency outliers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import deque
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Container

    from generators.clock import Cancellable, Clock

EARLY_S = 0.002
"""A wake-up this close before a tick's time is that tick. uvloop (libuv) keeps timers in whole
milliseconds of a clock read once per loop iteration: a timer can fire up to a millisecond
before its deadline by ``time.monotonic()``, and one asked for in under 0.5 ms runs at once.
Sleeping again for such a remainder spun the loop (tens of iterations before a tick, each an
``epoll_pwait`` and two ``getpid`` calls), several times the loop's useful wake-ups."""


class Tickable(Protocol):
    due_tick: int
    """The tick this item is due at (-1: none); owned by the ticker."""

    def fire(self, now: float) -> float | None:
        """Send once; return when to fire next, or None to leave the wheel."""

    @property
    def pending(self) -> Container[int]:
        """The seqs still waiting for an answer (an answered one needs no timeout call)."""

    def on_timeout(self, seq: int) -> None:
        """``seq`` is still pending past its deadline."""


class Ticker:
    def __init__(
        self, clock: Clock, tick_s: float = 0.005, flush: Callable[[], None] | None = None
    ) -> None:
        """``flush`` runs once the due items of a tick have fired (it writes their sends:
        see :mod:`generators.outbox`)."""
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self._clock = clock
        self._flush = flush
        self._tick_s = tick_s
        self._t0 = clock.monotonic()
        self._done_tick = -1
        self._wheel: dict[int, list[Tickable]] = {}
        self._ticks: list[int] = []
        """Heap of the ticks that have a wheel slot (each pushed once, when its slot is made)."""
        self._expiries: dict[float, _Fifo] = {}
        self._on_timer: Callable[[], None] | None = None
        """While :meth:`run` runs: the timer callback of a tick."""
        self._timer: Cancellable | None = None
        self._armed = -1
        """The tick the timer is set for (-1: none)."""
        self._read_at = -math.inf
        """A time by which everything that had arrived on the sockets was read (see
        :meth:`run`)."""
        self._marking = False
        self._unjudged = False
        """An expectation still pending past its deadline waits for :attr:`_read_at` to pass
        it: the next tick marks the socket pair (see :meth:`run`)."""

    def schedule(self, item: Tickable, at: float) -> None:
        """Fire ``item`` at ``at`` (or the next tick); an earlier schedule of it is dropped."""
        tick = self._tick_of(at)
        item.due_tick = tick
        bucket = self._wheel.get(tick)
        if bucket is None:
            self._wheel[tick] = [item]
            heappush(self._ticks, tick)
        else:
            bucket.append(item)
        if self._armed < 0 or tick < self._armed:
            self._arm(tick)

    def cancel(self, item: Tickable) -> None:
        item.due_tick = -1

    def expect(self, sent_at: float, timeout_s: float, item: Tickable, seq: int) -> None:
        """Call ``item.on_timeout(seq)`` once ``sent_at + timeout_s`` has passed, if ``seq``
        is still in ``item.pending`` then.

        ``sent_at`` must not go back between calls (it is the tick's time)."""
        fifo = self._expiries.get(timeout_s)
        if fifo is None:
            fifo = self._expiries[timeout_s] = _Fifo()
        fifo.deadlines.append(sent_at + timeout_s)
        fifo.items.append(item)
        fifo.seqs.append(seq)
        if self._armed < 0:  # never within a tick (the timer is set then): not per message
            self._arm(self._tick_of(sent_at + timeout_s))

    def run_due(
        self, now: float, through: float | None = None, judged: float | None = None
    ) -> None:
        """Fire everything due by ``now`` (or by ``through``, a tick time at most
        :data:`EARLY_S` ahead), and time out the expectations whose deadline is at most
        ``judged`` (default ``now``); exposed for tests that drive time by hand. Items fire
        with ``now``, the time it really is."""
        # The epsilon keeps a tick whose deadline is exactly now from rounding down to the
        # previous one (which would re-arm the same deadline forever on a fake clock).
        upto = now if through is None or through < now else through
        current = math.floor((upto - self._t0) / self._tick_s + 1e-9)
        wheel = self._wheel
        t0, tick_s, ceil = self._t0, self._tick_s, math.ceil
        flush = self._flush
        ticks = self._ticks
        while ticks and ticks[0] <= current:
            tick = heappop(ticks)
            bucket = wheel.pop(tick, None)
            if not bucket:
                continue
            self._done_tick = tick
            for item in bucket:
                if item.due_tick != tick:
                    continue
                item.due_tick = -1
                nxt = item.fire(now)
                if nxt is not None:
                    # schedule() inlined (one call per message less). Catch up after a
                    # stall, but never by more than one second's burst.
                    at = ceil(((nxt if nxt > now - 1.0 else now) - t0) / tick_s - 1e-9)
                    at = at if at > tick else tick + 1
                    item.due_tick = at
                    later = wheel.get(at)
                    if later is None:
                        wheel[at] = [item]
                        heappush(ticks, at)
                    else:
                        later.append(item)
            # Each tick's sends are written before the next tick fires (a loop running behind
            # catches up several ticks here): an item firing again sees its connection as the
            # previous send left it.
            if flush is not None:
                flush()
        self._done_tick = max(self._done_tick, current)
        upto = now if judged is None else judged
        unjudged = False
        for fifo in self._expiries.values():
            deadlines = fifo.deadlines
            items, seqs = fifo.items, fifo.seqs
            while deadlines and deadlines[0] <= now:
                # Most messages are answered in time: dropped once their deadline is past, no
                # call. One still pending is judged only by a time all answers had been read.
                if seqs[0] in items[0].pending:
                    if deadlines[0] > upto:
                        unjudged = True
                        break
                    deadlines.popleft()
                    items.popleft().on_timeout(seqs.popleft())
                else:
                    deadlines.popleft()
                    items.popleft()
                    seqs.popleft()
        self._unjudged = unjudged

    async def run(self) -> None:
        """Tick until cancelled; an error of a tick is raised here.

        A tick is a timer callback that does the tick's work and sets the timer for the next
        tick with something in it (none if there is nothing: :meth:`schedule` sets it then).
        A coroutine sleeping between ticks cost a future, a timer and a task step per tick, and
        one more pass of the event loop (an ``epoll_pwait`` and a ``getpid``) to run the step.

        A tick times out only the expectations whose deadline had passed by :attr:`_read_at`,
        a time by which the loop has read everything that had arrived on its sockets. A tick
        writes a byte into a socket pair of its own and notes when; the loop reads it in a
        pass over the sockets that were ready by then (the byte was written after anything
        that had arrived before), and its reader sets :attr:`_read_at` to that time. A loop
        running behind (the generator overloaded) runs due timers with answers still unread
        in the kernel, and may run several overdue timers before it next polls: judging up to
        ``now`` there recorded the generator's own delay as the system's timeout. A deadline
        is judged a tick or so after it passed (the ticker keeps ticking for it)."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        clock = self._clock
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        marked_at = -math.inf

        def read() -> None:
            with contextlib.suppress(BlockingIOError):
                reader.recv(64)
            self._marking = False
            self._read_at = marked_at

        def tick() -> None:
            nonlocal marked_at
            try:
                now = clock.monotonic()
                deadline = self._t0 + self._armed * self._tick_s
                if deadline - now <= EARLY_S:
                    # _armed stays set: expect() arms nothing
                    self.run_due(now, deadline, judged=self._read_at)
                if self._unjudged and not self._marking:
                    # Only while an expectation waits to be judged: a mark costs a write, a
                    # read and a pass of the loop.
                    self._marking = True
                    marked_at = now
                    writer.send(b"\0")
                self._armed, self._timer = -1, None
                nxt = self._next_tick()
                if nxt >= 0:
                    self._arm(nxt)
            except Exception as exc:
                if not failed.done():  # a schedule() may set the timer again before run() ends
                    failed.set_exception(exc)

        self._on_timer = tick
        loop.add_reader(reader.fileno(), read)
        nxt = self._next_tick()
        if nxt >= 0:
            self._arm(nxt)
        try:
            await failed
        finally:
            loop.remove_reader(reader.fileno())
            reader.close()
            writer.close()
            self._marking = False
            self._on_timer = None
            if self._timer is not None:
                self._timer.cancel()
            self._armed, self._timer = -1, None

    def _arm(self, tick: int) -> None:
        """Set the timer for ``tick`` (while running), replacing one set for a later tick."""
        if self._on_timer is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed = tick
        self._timer = self._clock.call_at(self._t0 + tick * self._tick_s, self._on_timer)

    def _tick_of(self, at: float) -> int:
        """The first tick at or after ``at``, never one already done (so an expectation whose
        deadline a timer firing early just missed waits one tick, not a spin)."""
        return max(self._done_tick + 1, math.ceil((at - self._t0) / self._tick_s - 1e-9))

    def _next_tick(self) -> int:
        """The next tick with a slot in the wheel or an expectation due; -1 if none."""
        nxt = self._ticks[0] if self._ticks else -1
        for fifo in self._expiries.values():
            if fifo.deadlines:
                at = self._tick_of(fifo.deadlines[0])
                if nxt < 0 or at < nxt:
                    nxt = at
        return nxt


class _Fifo:
    __slots__ = ("deadlines", "items", "seqs")

    def __init__(self) -> None:
        self.deadlines: deque[float] = deque()
        self.items: deque[Tickable] = deque()
        self.seqs: deque[int] = deque()
