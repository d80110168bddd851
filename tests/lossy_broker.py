"""A broker of a test's own that forgets everything when restarted (the embedded Tansu keeps
its data in memory), and how to read what an event log lost for good."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Self

from schemas.events import LogLoss, parse_event
from spine.eventlog.reader import EventReader
from spine.settings import Settings
from spine.stack import EmbeddedStack, free_port

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from schemas.events import Event

RETAIN_NOTHING = {"AFTERSHOCK_EVENTLOG_RETAIN_BYTES": "1"}
"""A publisher's environment keeping no acknowledged batch beyond its current segment."""


class LossyBroker:
    """An embedded broker alone (no Valkey) on a free port, for an ``async with``."""

    def __init__(self, state_dir: Path) -> None:
        settings = Settings(state_dir=state_dir, kafka_port=free_port("127.0.0.1"))
        self.settings = settings.model_copy(update={"redis_url": "redis://unused"})
        self._stack = EmbeddedStack(self.settings)

    @property
    def bootstrap(self) -> str:
        return self._stack.kafka_bootstrap

    async def __aenter__(self) -> Self:
        await self._stack.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.stop()

    async def restart(self) -> None:
        """Stop and start again on the same port: everything it had is gone."""
        await self._stack.stop()
        self._stack = EmbeddedStack(self.settings)
        await self._stack.start()

    async def read(
        self, topic: str, at_least: int = 0, *, idle: bool = True, timeout_s: float = 60
    ) -> list[Event]:
        """The topic's events: at least ``at_least`` (waiting for them), then, with ``idle``,
        more until none came for a second (only once producers have stopped)."""
        got: list[Event] = []
        async with (
            EventReader(self.bootstrap, topic, deadletter_topic=None) as reader,
            asyncio.timeout(timeout_s),
        ):
            while len(got) < at_least:
                got += await reader.read(max_events=at_least - len(got), idle_timeout_s=0.2)
            if idle:
                got += await reader.read(idle_timeout_s=1.0)
        return got


def jsonl_ids(path: Path) -> set[str]:
    """The event ids of a JSON-lines event file (what a command really emitted)."""
    return {parse_event(line).event_id for line in path.read_text().splitlines() if line}


def losses(events: list[Event]) -> list[LogLoss]:
    return [e for e in events if isinstance(e, LogLoss)]


async def stderr_until(stream: asyncio.StreamReader, text: str, timeout_s: float = 60) -> str:
    """Lines of ``stream`` up to and including the first that holds ``text``."""
    seen = []
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"{text!r} never came; got:\n{''.join(seen)}")
            seen.append(line)
            if text in line:
                return "".join(seen)
