"""Running clean-up work that must finish even while the caller is being cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


async def shielded(fn: Callable[[], Coroutine[Any, Any, Any]], limit_s: float) -> None:
    """Run ``fn()`` to completion (or ``limit_s``, then ``TimeoutError``) even if the caller
    is cancelled meanwhile. A cancellation that arrives is absorbed, not re-raised: the
    caller's next clean-up step (the executor's reverts after its rollbacks, say) must run
    too; callers learn of the interruption from their own state, not from this call."""
    task: asyncio.Task[Any] = asyncio.ensure_future(fn())
    deadline = time.monotonic() + limit_s
    cancelled = False
    while not task.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise TimeoutError
        try:
            await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    task.result()
