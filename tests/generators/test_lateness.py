"""A generator that falls behind its schedule says so, exactly: every send that left late
carries how late, every send it dropped is counted in a ``session.skipped`` event, and the two
add up to the sends the schedule asked for while it was stuck. Time is a fake clock; the loop
"stalls" by moving it with no timer run."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import TYPE_CHECKING

import pytest

from generators.clock import FakeClock
from schemas.events import Send, SendSkipped
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.fakes import FakeEngine, fake_generator

if TYPE_CHECKING:
    from generators.stats import GeneratorStats

TICK_S = 0.01
RATE = 10  # sends per second: one due every 100 ms


async def _stall(stall_s: float) -> tuple[MemorySink, float, float, GeneratorStats]:
    """Run one session at RATE; 2 s in, stall the loop for ``stall_s``, starting 50 ms after a
    send. Returns the events, the time of that last send before the stall, the time the
    loop resumed, and the stats at the end."""
    clock = FakeClock()
    engine = FakeEngine(clock)
    prof = profile(
        tenants=[{"name": "a", "users": 1}],
        duration_s=30,
        script=[{"do": "connect"}, {"do": "send", "rate_per_s": RATE, "expect": "none"}],
    )
    sink = MemorySink()
    gen = fake_generator(prof, engine, tick_s=TICK_S, sink=sink, clock=clock)
    run = asyncio.create_task(gen.run())
    await clock.advance(2.0)
    before = engine.connections[0].sent_at[-1]
    await clock.advance(before + 0.05 - clock.monotonic())
    clock._now += stall_s  # nothing ran meanwhile
    resumed = clock.monotonic()
    await clock.advance(1.0)
    gen.stop()
    await clock.advance(3)
    stats = await asyncio.wait_for(run, 5)
    return sink, before, resumed, stats


async def test_a_stall_under_a_second_sends_every_missed_message_late() -> None:
    sink, before, resumed, stats = await _stall(0.52)
    late = [e.late_ms for e in sink.events if isinstance(e, Send) and e.late_ms is not None]
    # Due in the stall: the sends at d1, d1 + 0.1 ... below `resumed`, with d1 the first due
    # after `before` (a send goes out on the first tick at or after its due time, so d1 lies
    # in (before + 0.09, before + 0.1]): five. They catch up one per tick, the overdue ticks
    # running at once, so each is 100 ms less late than the one before; the sixth falls due
    # after the loop resumed, and leaves on time.
    assert len(late) == 5
    assert stats.late_sends == 5
    first = (resumed - before - 0.1) * 1000
    assert first <= late[0] < first + TICK_S * 1000
    assert [round(a - b, 6) for a, b in itertools.pairwise(late)] == [100.0] * 4
    assert sink.of_kind("session.skipped") == []
    assert stats.skipped_behind == 0
    assert stats.max_late_ms == pytest.approx(late[0])
    assert stats.fell_behind


async def test_a_stall_over_a_second_sends_one_late_and_skips_the_rest_exactly() -> None:
    sink, before, resumed, stats = await _stall(2.5)
    late = [e for e in sink.events if isinstance(e, Send) and e.late_ms is not None]
    [skipped] = [e for e in sink.events if isinstance(e, SendSkipped)]
    [late_send] = late
    assert late_send.late_ms is not None
    # The send due first in the stall (d1) leaves when the loop resumes; the ones due after
    # it, up to then, are skipped: all of them, counted.
    d1 = resumed - late_send.late_ms / 1000
    assert before + 0.09 < d1 <= before + 0.1 + 1e-9
    assert (skipped.reason, skipped.late_ms) == ("behind", pytest.approx(late_send.late_ms - 100))
    due_in_stall = math.ceil((resumed - d1) / 0.1 - 1e-9)
    assert 1 + skipped.count == due_in_stall == 25
    assert (stats.late_sends, stats.skipped_behind) == (1, 24)
    # After it, the schedule restarts from the time it resumed: on time again.
    sends = [e for e in sink.events if isinstance(e, Send)]
    after = sends[sends.index(late_send) + 1 :]
    assert len(after) >= 9
    assert all(e.late_ms is None for e in after)
    assert "GENERATOR BEHIND: late=1" in stats.line()
