"""The shared ticker: sends fire on their tick, re-scheduling drops the old slot, expectation
timeouts fire once their deadline passed, per timeout length and in order."""

from __future__ import annotations

from generators.clock import FakeClock
from generators.ticker import Ticker


class Item:
    def __init__(self, every_s: float | None = None) -> None:
        self.due_tick = -1
        self.every_s = every_s
        self.fired: list[float] = []
        self.timed_out: list[int] = []

    def fire(self, now: float) -> float | None:
        self.fired.append(now)
        return now + self.every_s if self.every_s is not None else None

    def on_timeout(self, seq: int) -> None:
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
