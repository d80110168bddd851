"""Ending a run whatever its tasks do: cancellation that cannot be lost, and the watchdog."""

from __future__ import annotations

import asyncio
import random
import sys
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from aftershock.gameday.stopping import cancel_and_wait
from aftershock.gameday.workers import WorkerAnalysis
from analyzers.core import AnalyzerConfig

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack
    from tests.processes import Processes


async def _swallows(n: int, ended: list[bool]) -> None:
    """Loses its first ``n`` cancellations, as a library that catches one by mistake does."""
    lost = 0
    try:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                lost += 1
                if lost > n:
                    raise
    finally:
        ended.append(True)


async def test_a_task_that_loses_cancellations_still_ends() -> None:
    ended: list[bool] = []
    task = asyncio.create_task(_swallows(3, ended))
    await asyncio.sleep(0)
    task.cancel()  # one cancel() is not enough for such a task
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    await asyncio.wait_for(cancel_and_wait([task], every_s=0.01), 5)
    assert task.cancelled()
    assert ended == [True]


async def test_the_caller_cancelled_meanwhile_still_waits_for_the_tasks() -> None:
    ended: list[bool] = []
    task = asyncio.create_task(_swallows(5, ended))
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait([task], every_s=0.05))
    await asyncio.sleep(0.01)
    stopper.cancel()
    done, _ = await asyncio.wait({stopper}, timeout=10)
    assert done
    assert stopper.cancelled()
    assert task.cancelled()
    assert ended == [True]


async def test_the_worker_analysis_poller_always_stops(stack: EmbeddedStack) -> None:
    """The loop that once kept an interrupted ``run --workers`` from ending: it polls Redis,
    whose client can lose a cancellation on Python 3.11 (``asyncio.wait_for``)."""
    redis = Redis.from_url(stack.redis_url)
    try:
        analysis = WorkerAnalysis(
            f"stopping-{random.randrange(1 << 30)}", AnalyzerConfig(), redis, interval_s=0.0
        )
        for _ in range(40):
            task = asyncio.create_task(analysis.run())
            await asyncio.sleep(random.random() * 0.02)
            await asyncio.wait_for(cancel_and_wait([task]), 30)
            assert task.done()
    finally:
        await redis.aclose()


_WATCHED = """
import sys, time
from aftershock.gameday.stopping import ExitWatchdog
w = ExitWatchdog(status=2)
w.arm(60, "late")
w.arm(0.2, "the test's deadline")  # the earlier deadline wins
if sys.argv[1] == "disarm":
    w.disarm()
time.sleep(1.0 if sys.argv[1] == "disarm" else 50.0)  # firing, it never wakes from this
print("still here", flush=True)
"""


def test_the_watchdog_ends_the_process_unless_disarmed(procs: Processes) -> None:
    fired = procs.run([sys.executable, "-c", _WATCHED, "fire"], timeout=60, text=True)
    assert fired.returncode == 2
    assert "the test's deadline: exiting with status 2" in fired.stderr
    assert "most recent call first" in fired.stderr  # where it was stuck: the stacks
    assert 'File "<string>", line 9 in <module>' in fired.stderr  # the main thread's sleep
    assert "still here" not in fired.stdout
    calm = procs.run([sys.executable, "-c", _WATCHED, "disarm"], timeout=60, text=True)
    assert calm.returncode == 0, calm.stderr
    assert calm.stdout == "still here\n"
