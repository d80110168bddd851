"""The timed-stage wheel and its alarm: chunks leave in order, never early beyond the wheel's
granularity, on both alarms (timerfd and loop timers) and both loops (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import time

import pytest
import uvloop

from injector.proxy.toxics import alarm as alarm_module
from injector.proxy.toxics.alarm import Alarm
from injector.proxy.toxics.base import Wheel
from injector.proxy.toxics.latency import LatencyConfig, LatencyStage


class _Port:
    """The little a latency stage asks of its link."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.held = 0

    def buffered_changed(self, delta: int) -> None:
        self.held += delta

    def close_connection(self) -> None:
        raise AssertionError("a latency stage never closes")

    def reset_connection(self) -> None:
        raise AssertionError("a latency stage never resets")


async def _release_errors(links: int, chunks: int, latency_ms: int) -> tuple[list[float], Wheel]:
    """Push ``chunks`` chunks spread over ``links`` latency stages; signed release errors (s)."""
    loop = asyncio.get_running_loop()
    errors: list[float] = []
    done = loop.create_future()
    stages: list[tuple[LatencyStage, list[tuple[float, int]], _Port]] = []
    expected_next = [0] * links
    for i in range(links):
        port = _Port(loop)
        stage = LatencyStage(LatencyConfig(latency=latency_ms), port, random.Random(i))
        due: list[tuple[float, int]] = []

        def out(data: bytes, due: list[tuple[float, int]] = due, i: int = i) -> None:
            at, seq = due.pop(0)
            assert int(data) == seq == expected_next[i], "released out of order"
            expected_next[i] += 1
            errors.append(time.monotonic() - at)
            if len(errors) == chunks and not done.done():
                done.set_result(None)

        stage.out = out
        stage.active = True
        stages.append((stage, due, port))
    for n in range(chunks):
        stage, due, _ = stages[n % links]
        seq = n // links
        due.append((time.monotonic() + latency_ms / 1000, seq))
        stage.push(str(seq).encode())
        if n % 25 == 24:
            await asyncio.sleep(0.0003)
    await asyncio.wait_for(done, 10)
    assert all(port.held == 0 for _, _, port in stages)
    return errors, Wheel.of(loop)


@pytest.mark.parametrize("precise", [True, False], ids=["timerfd", "loop-timers"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_wheel_releases_in_order_never_early(
    precise: bool, loop_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if precise and not sys.platform.startswith("linux"):
        pytest.skip("timerfd is Linux only")
    if not precise:
        monkeypatch.setattr(alarm_module, "_LIBC", None)
    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    errors, wheel = runner(_release_errors(links=20, chunks=1000, latency_ms=5))
    assert wheel.alarm.precise is precise
    # Early only within the wheel's granularity: a wake-up releases up to the end of the
    # slot nearest to now + tolerance, at most a slot plus the tolerance ahead.
    assert min(errors) >= -(wheel.slot_s + wheel.tolerance_s) - 1e-6, min(errors)
    assert max(errors) < 0.5, max(errors)  # late only by what the machine imposes


def test_alarm_fires_once_not_before_its_time() -> None:
    async def scenario() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        alarm = Alarm(loop, lambda: fired.append(time.monotonic()))
        assert alarm.precise is sys.platform.startswith("linux")
        at = time.monotonic() + 0.02
        alarm.arm(at + 1.0)
        alarm.arm(at)  # re-arming replaces the earlier time
        async with asyncio.timeout(5):  # however late a busy machine lets it fire
            while not fired:
                await asyncio.sleep(0.005)
        alarm.arm(time.monotonic() + 0.01)
        alarm.disarm()  # a disarmed alarm stays silent
        await asyncio.sleep(0.05)
        return fired, at

    fired, at = uvloop.run(scenario())
    assert len(fired) == 1, fired
    assert at <= fired[0] < at + 0.9, fired[0] - at  # never early; not the replaced +1 s


def test_a_finished_loop_frees_its_wheel_and_alarm_descriptor() -> None:
    async def use_a_wheel() -> None:
        loop = asyncio.get_running_loop()
        stage = LatencyStage(LatencyConfig(latency=1), _Port(loop), random.Random(0))
        stage.active = True
        done = loop.create_future()
        stage.out = lambda data: done.set_result(data)
        stage.push(b"x")
        assert await asyncio.wait_for(done, 5) == b"x"

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    uvloop.run(use_a_wheel())  # the first run may set up lasting things (thread pools, ...)
    gc.collect()
    before, wheels = open_fds(), len(Wheel._wheels)
    for _ in range(5):
        uvloop.run(use_a_wheel())
        asyncio.run(use_a_wheel())
    gc.collect()
    assert len(Wheel._wheels) <= wheels
    assert open_fds() <= before
