"""De-duplication memory bound and clear errors of the event log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from schemas.events import Send
from spine.errors import EventLogError
from spine.eventlog import EventSink
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader, SeenIds
from tests.eventlog.samples import sample

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.eventlog.conftest import Topics


def test_seen_ids_are_bounded_and_remember_recent_ids() -> None:
    seen = SeenIds(capacity=100)
    for i in range(10_000):
        assert seen.add(f"id-{i}")
        assert len(seen) <= 100
    assert not seen.add("id-9999")
    assert not seen.add("id-9950")
    assert seen.add("id-0")  # long forgotten


async def test_publisher_is_an_event_sink_and_refuses_emit_after_close(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub:
        assert isinstance(pub, EventSink)
        pub.emit(sample(Send, seq=1, bytes=1))
    assert pub.statistics().sent == 1
    await pub.aclose()  # idempotent
    with pytest.raises(EventLogError, match="closed publisher"):
        pub.emit(sample(Send, seq=2, bytes=1))


async def test_reader_names_a_missing_topic(stack: EmbeddedStack) -> None:
    with pytest.raises(EventLogError, match=r"'no\.such\.topic' does not exist"):
        async with EventReader(stack.kafka_bootstrap, "no.such.topic"):
            pass
