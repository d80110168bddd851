"""The shared ticker: sends fire on their tick, re-scheduling drops the old slot, expectation
timeouts fire once their deadline passed, per timeout length and in order; a timer firing a
little early is the tick; a tick's sends are written after all its items fired; an error in a
tick ends ``run``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from generators.clock import FakeClock
from generators.errors import ConnectionLost
from generators.outbox import Outbox
from generators.ticker import Ticker

if TYPE_CHECKING:
    from collections.abc import Callable

    from generators.clock import Cancellable


class Item:
    def __init__(self, every_s: float | None = None) -> None:
        self.due_tick = -1
        self.every_s = every_s
        self.fired: list[float] = []
        self.timed_out: list[int] = []
        self.pending: set[int] = set()

    def fire(self, now: float) -> float | None:
        self.fired.append(now)
        return now + self.every_s if self.every_s is not None else None

    def on_timeout(self, seq: int) -> None:
        self.pending.discard(seq)
        self.timed_out.append(seq)


def test_items_fire_on_their_tick_and_a_reschedule_replaces_the_old_slot() -> None:
    clock = FakeClock()
    ticker = Ticker(clock, tick_s=0.01)
    a, b = Item(every_s=0.05), Item()
    ticker.schedule(a, 0.02)
    ticker.schedule(b, 0.03)
    ticker.schedule(b, 0.07)  # moved: must not fire at 0.03
    for step in range(1, 13):
        ticker.run_due(step * 0.01)
    assert [round(t, 2) for t in a.fired] == [0.02, 0.07, 0.12]
    assert [round(t, 2) for t in b.fired] == [0.07]
    ticker.cancel(a)
    ticker.run_due(0.3)
    assert len(a.fired) == 3


def test_timeouts_fire_after_their_deadline_per_length_in_order() -> None:
    ticker = Ticker(FakeClock(), tick_s=0.01)
    short, long_ = Item(), Item()
    short.pending.update((1, 2))
    long_.pending.update((1, 2))
    ticker.expect(0.0, 1.0, long_, 1)
    ticker.expect(0.0, 0.1, short, 1)
    ticker.expect(0.05, 0.1, short, 2)
    ticker.expect(0.05, 1.0, long_, 2)
    ticker.run_due(0.099)
    assert short.timed_out == long_.timed_out == []
    ticker.run_due(0.1)
    assert short.timed_out == [1]
    ticker.run_due(0.2)
    assert short.timed_out == [1, 2]
    assert long_.timed_out == []
    ticker.run_due(1.05)
    assert long_.timed_out == [1, 2]
    ticker.run_due(5.0)
    assert short.timed_out == [1, 2]
    assert long_.timed_out == [1, 2]


def test_an_answered_seq_gets_no_timeout_call() -> None:
    ticker = Ticker(FakeClock(), tick_s=0.01)
    item = Item()
    item.pending.update((1, 2))
    ticker.expect(0.0, 0.1, item, 1)
    ticker.expect(0.0, 0.1, item, 2)
    item.pending.discard(1)  # answered in time
    ticker.run_due(0.2)
    assert item.timed_out == [2]


class EarlyClock(FakeClock):
    """A clock whose timers fire up to a millisecond early, as uvloop's whole-millisecond
    timers do by ``time.monotonic()``; counts the sleeps it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps = 0

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Cancellable:
        self.sleeps += 1
        if self.sleeps > 1000:
            raise RuntimeError("the ticker spins on early wake-ups")
        return super().call_at(deadline - 0.0008, callback)


async def test_an_early_wake_up_is_the_tick_not_a_reason_to_sleep_again() -> None:
    clock = EarlyClock()
    ticker = Ticker(clock, tick_s=0.01)
    item = Item(every_s=0.01)
    ticker.schedule(item, 0.01)
    task = asyncio.create_task(ticker.run())
    await clock.advance(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # One sleep per tick, and each tick fired on its early wake-up (with the real time).
    assert clock.sleeps <= 12  # ticks 0 to 10, and the sleep towards tick 11
    assert [round(t, 4) for t in item.fired] == [round(0.01 * k - 0.0008, 4) for k in range(1, 11)]


async def test_an_idle_ticker_sets_no_timers_and_wakes_for_what_is_due() -> None:
    clock = EarlyClock()
    ticker = Ticker(clock, tick_s=0.01)
    task = asyncio.create_task(ticker.run())
    await clock.advance(1.0)
    assert clock.sleeps == 0  # nothing scheduled: no tick at all

    once, every = Item(), Item(every_s=0.3)
    ticker.schedule(once, 1.25)
    ticker.schedule(every, 1.5)
    ticker.schedule(Item(), 1.1)  # scheduled earlier than the timer set: the timer moves
    await clock.advance(1.0)
    assert [round(t, 4) for t in once.fired] == [1.2492]  # on its tick, woken 0.8 ms early
    assert [round(t, 4) for t in every.fired] == [1.4992, 1.7992]
    # One timer per tick with work (1.1, 1.25, 1.5, 1.8), one moved, and the next of `every`.
    assert clock.sleeps == 6

    # An expectation alone wakes the ticker once, at the first tick after its deadline.
    ticker.cancel(every)
    await clock.advance(0.5)
    sleeps = clock.sleeps
    waiting = Item()
    waiting.pending.add(7)
    ticker.expect(clock.monotonic(), 0.25, waiting, 7)
    await clock.advance(1.0)
    assert waiting.timed_out == [7]
    # Its tick, one more if woken before the deadline, and the next (a deadline is judged at
    # the first tick after one that ran past it: see Ticker.run).
    assert clock.sleeps - sleeps <= 3
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Failing(Item):
    def fire(self, now: float) -> float | None:
        raise ValueError("a session's bug")


async def test_an_error_in_a_tick_ends_run_with_that_error() -> None:
    clock = FakeClock()
    ticker = Ticker(clock, tick_s=0.01)
    ok = Item(every_s=0.01)
    ticker.schedule(ok, 0.01)
    ticker.schedule(Failing(every_s=0.01), 0.035)
    task = asyncio.create_task(ticker.run())
    await clock.advance(0.1)
    assert task.done()
    with pytest.raises(ValueError, match="a session's bug"):
        await task
    assert ok.fired == [0.01, 0.02, 0.03]  # nothing fired from the failing tick on


class Queueing(Item):
    """Queues a send in the outbox when fired, like a session."""

    def __init__(self, outbox: Outbox, conn: Conn, log: list[str], name: str) -> None:
        super().__init__(every_s=0.01)
        self.outbox, self.conn, self.log, self.name = outbox, conn, log, name
        self.unsent_seqs: list[int] = []

    def fire(self, now: float) -> float | None:
        self.log.append(f"fire {self.name}")
        self.outbox.put((self, self.conn, self.name, len(self.fired) + 1, None))
        return super().fire(now)

    def unsent(self, seq: int) -> None:
        self.unsent_seqs.append(seq)


class Conn:
    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        if self.fail:
            raise ConnectionLost("closed")
        self.log.append(f"send {data}")


def test_a_tick_writes_its_sends_after_every_due_item_fired() -> None:
    log: list[str] = []
    outbox = Outbox()
    ticker = Ticker(FakeClock(), tick_s=0.01, flush=outbox.flush)
    conn = Conn(log)
    broken = Conn(log, fail=True)
    items = [
        Queueing(outbox, conn, log, "a"),
        Queueing(outbox, broken, log, "b"),
        Queueing(outbox, conn, log, "c"),
    ]
    for item in items:
        ticker.schedule(item, 0.01)
    ticker.run_due(0.01)
    assert log == ["fire a", "fire b", "fire c", "send a", "send c"]
    assert items[1].unsent_seqs == [1]
    assert len(outbox) == 0
    ticker.run_due(0.015)  # nothing due: nothing written
    assert len(log) == 5
