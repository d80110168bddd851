"""Helpers for the small loopback servers tests start themselves."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


async def close_accepted(writers: set[asyncio.StreamWriter]) -> None:
    """Close every connection a test server accepted and wait for each to be closed.

    On 3.11 ``Server.close()`` leaves accepted connections open; a handler still waiting when
    the test's loop ends would leak its socket (a ResourceWarning, an error under
    ``filterwarnings = error``).
    """
    closing = list(writers)
    for w in closing:
        w.close()
    for w in closing:
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
