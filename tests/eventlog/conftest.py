"""Each test gets fresh topics on the session stack, so tests never see each other's records."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack


class Topics:
    def __init__(self, events: str, deadletter: str) -> None:
        self.events = events
        self.deadletter = deadletter


@pytest.fixture
async def topics(stack: EmbeddedStack) -> Topics:
    suffix = os.urandom(4).hex()
    t = Topics(f"test.events.{suffix}", f"test.deadletter.{suffix}")
    await stack.create_topics([t.events, t.deadletter], partitions=3)
    return t
