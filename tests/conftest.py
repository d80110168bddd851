"""Fixtures shared by every area's tests.

``stack`` is one embedded stack (Tansu broker + Valkey, topics created) for the whole test
session; its attributes ``kafka_bootstrap`` and ``redis_url`` are plain strings, usable from any
event loop. With ``AFTERSHOCK_KAFKA_BOOTSTRAP`` / ``AFTERSHOCK_REDIS_URL`` set, the configured
servers are used instead. Tests share its topics: give each test its own ``experiment_id`` or
its own topics (``await stack.create_topics([...])``).

``procs`` starts a test's processes (tests/processes.py): whatever the test's outcome, they are
stopped, reaped and their pipes closed when it ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from spine.settings import Settings
from spine.stack import EmbeddedStack
from tests.processes import Processes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> Iterator[EmbeddedStack]:
    # A fixed state directory, so the next run finds and stops what a crashed run left behind.
    settings = Settings(state_dir=pytestconfig.rootpath / ".aftershock" / "pytest")
    embedded = EmbeddedStack(settings)
    asyncio.run(embedded.start())
    try:
        yield embedded
    finally:
        asyncio.run(embedded.stop())


@pytest.fixture
async def procs() -> AsyncIterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.close()
        await processes.aclose()
