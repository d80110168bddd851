"""Fixtures shared by every area's tests.

``stack`` is one embedded stack (Tansu broker + Valkey, topics created) for the whole test
session; its attributes ``kafka_bootstrap`` and ``redis_url`` are plain strings, usable from any
event loop. With ``AFTERSHOCK_KAFKA_BOOTSTRAP`` / ``AFTERSHOCK_REDIS_URL`` set, the configured
servers are used instead. Tests share its topics: give each test its own ``experiment_id`` or
its own topics (``await stack.create_topics([...])``).

``procs`` starts a test's processes (tests/processes.py): whatever the test's outcome, they are
stopped, reaped and their pipes closed when it ends.

Tests send SIGINT to the processes they start, as a terminal's Ctrl-C would reach a foreground
command. A suite started in the background by a shell without job control inherits SIGINT
ignored, and so would every process it starts (an ignored signal stays ignored across exec):
the session takes back Python's default handling first.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import pytest

from spine.settings import Settings
from spine.stack import EmbeddedStack
from tests.processes import Processes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
