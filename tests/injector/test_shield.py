"""``shielded``: clean-up that finishes although its caller is cancelled (a second Ctrl-C)."""

from __future__ import annotations

import asyncio

import pytest

from injector.shield import shielded


async def test_a_cancelled_caller_still_runs_every_clean_up_step() -> None:
    done: list[str] = []
    started = asyncio.Event()

    async def step(name: str) -> None:
        started.set()
        await asyncio.sleep(0.2)
        done.append(name)

    async def clean_up() -> None:
        await shielded(lambda: step("rollbacks"), 5.0)
        await shielded(lambda: step("reverts"), 5.0)  # runs although the caller was cancelled

    task = asyncio.create_task(clean_up())
    await started.wait()
    task.cancel()  # during the first step
    await task  # absorbed: no CancelledError
    assert done == ["rollbacks", "reverts"]


async def test_a_step_past_its_limit_is_cancelled_and_times_out() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(TimeoutError):
        await shielded(forever, 0.2)
    assert cancelled.is_set()
    assert loop.time() - t0 < 10


async def test_an_error_of_the_step_reaches_the_caller() -> None:
    async def broken() -> None:
        raise RuntimeError("revert failed")

    with pytest.raises(RuntimeError, match="revert failed"):
        await shielded(broken, 1.0)
