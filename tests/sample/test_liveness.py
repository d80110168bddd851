"""Silence detection: a peer is not blamed for this process's own event-loop stalls."""

from __future__ import annotations

import asyncio
import time

import pytest

from examples.chat.liveness import Silence


async def test_own_loop_stall_is_not_silence_but_real_silence_is() -> None:
    silence = Silence(dead_after_s=0.3, interval_s=0.05, what="peer")
    watch = asyncio.create_task(silence.watch())

    async def talk() -> None:
        for _ in range(10):
            silence.heard()
            await asyncio.sleep(0.02)
            time.sleep(0.1)

    await talk()  # 1 s of mostly blocked loop while the peer keeps talking
    assert not watch.done()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="peer silent"):
        await watch
    assert (
        0.25 < time.monotonic() - started < 2.0
    )  # upper bounds leave a busy machine's scheduling room
