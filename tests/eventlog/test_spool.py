"""Nothing is lost: the disk spool across broker outages, memory pressure and restarts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from schemas.events import Send
from spine.eventlog import codec
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader
from spine.eventlog.spool import Spool
from spine.settings import Settings
from spine.stack import EmbeddedStack, free_port
from tests.eventlog.samples import sample
from tests.reading import read_events

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event
    from tests.eventlog.conftest import Topics


def _sends(n: int, start: int = 0, session: str = "s1") -> list[Event]:
    return [sample(Send, session=session, seq=i, bytes=100) for i in range(start, start + n)]


async def _wait_for(predicate: object, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def _env(i: int) -> codec.Envelope:
    return codec.encode_envelope(f"k{i}", _sends(1, start=i))


def test_spool_is_fifo_with_prepend_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=600)
    spool.open()
    for i in range(2, 10):
        spool.append(_env(i))
    assert spool.peek() is not None
    spool.prepend([_env(0), _env(1)])
    assert spool.events == 10
    first = spool.peek()
    assert first is not None
    assert first.key == b"k0"
    spool.pop()
    spool.close()  # not empty: stays on disk for the next publisher

    again = Spool(tmp_path)
    again.open()
    keys = []
    while (env := again.peek()) is not None:
        keys.append(env.key.decode())
        again.pop()
    # k0 was delivered but its segment was not finished: at least once, it comes back too.
    assert keys == [f"k{i}" for i in range(10)]
    assert again.adopted_segments >= 2
    again.close()
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_a_live_spool_is_not_adopted_and_a_torn_frame_is_skipped(tmp_path: Path) -> None:
    alive = Spool(tmp_path)
    alive.open()
    alive.append(_env(0))
    other = Spool(tmp_path)
    other.open()
    assert not other
    other.close()

    alive.append(_env(1))
    seg = sorted(alive.dir.glob("*.seg"))[-1]
    alive.close()
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a crash in the middle of the second frame
    survivor = Spool(tmp_path)
    survivor.open()
    env = survivor.peek()
    assert env is not None
    assert env.key == b"k0"
    survivor.pop()
    assert survivor.peek() is None
    assert survivor.torn_frames == 1
    survivor.close()


async def test_unreachable_broker_spools_and_next_publisher_drains(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = _sends(500)
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    async with Publisher(
        dead, topics.events, state_dir=tmp_path, delivery_timeout_s=1, flush_timeout_s=0.5
    ) as pub:
        for i, e in enumerate(events):
            if i % 2:  # encoded by the producer: spooled and delivered alike
                pub.emit_encoded(codec.partition_key(e), codec.encode_event(e))
            else:
                pub.emit(e)
    stats = pub.statistics()
    assert stats.sent == 0
    assert stats.in_spool == 500
    assert list((tmp_path / "spool" / topics.events).glob("*/*.seg"))

    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub2:
        await pub2.flush(10)
        assert pub2.statistics().sent == 500
    assert not list((tmp_path / "spool" / topics.events).glob("*/*.seg"))
    async with EventReader(stack.kafka_bootstrap, topics.events, deadletter_topic=None) as r:
        assert await read_events(r, 500) == events


async def test_memory_bound_spills_to_disk_and_keeps_order(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = _sends(2000)
    async with Publisher(
        stack.kafka_bootstrap,
        topics.events,
        state_dir=tmp_path,
        batch_events=50,
        max_memory_bytes=2000,
    ) as pub:
        for e in events:
            pub.emit(e)  # no await: the sender cannot run, the memory bound is hit
        assert pub.statistics().spooled > 0
        await pub.flush(20)
        assert pub.statistics().sent == 2000
    async with EventReader(stack.kafka_bootstrap, topics.events, deadletter_topic=None) as r:
        assert await read_events(r, 2000) == events


async def test_broker_restart_nothing_lost_nothing_duplicated(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    settings = Settings(
        state_dir=tmp_path / "state", kafka_port=port, redis_url=stack.redis_url, partitions=2
    )
    topic = settings.topic_events
    before, during, after = _sends(300, 0), _sends(300, 300), _sends(300, 600)
    broker = EmbeddedStack(settings)
    await broker.start()
    try:
        async with Publisher(
            broker.kafka_bootstrap,
            topic,
            state_dir=tmp_path,
            delivery_timeout_s=1.0,
            retry_backoff_s=0.1,
        ) as pub:
            for e in before:
                pub.emit(e)
            await pub.flush(10)
            async with EventReader(broker.kafka_bootstrap, topic, deadletter_topic=None) as r:
                got_before = await read_events(r, 300)

            await broker.stop()  # memory storage: the broker forgets everything
            for e in during:
                pub.emit(e)
            await _wait_for(lambda: pub.statistics().in_spool > 0)
            assert not pub.statistics().connected

            broker = EmbeddedStack(settings)
            await broker.start()  # same port, topics created again
            for e in after:
                pub.emit(e)
            await pub.flush(30)
            stats = pub.statistics()
        assert stats.in_spool == 0
        assert stats.sent >= 900
        assert stats.send_failures >= 1
        async with EventReader(broker.kafka_bootstrap, topic, deadletter_topic=None) as r:
            got_after = await read_events(r, len(during) + len(after), then_idle_s=2)
            dupes = r.statistics().duplicates
    finally:
        await broker.stop()
    assert got_before == before
    assert got_after == during + after  # in order, each once
    assert dupes == stats.sent - 900
