"""Nothing is lost: the local log across broker outages, memory pressure and restarts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from schemas.events import LogLoss, Send
from spine.eventlog import codec
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader
from spine.eventlog.spool import Journal
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


def _keys(frames: list[tuple[int, codec.Envelope]]) -> list[str]:
    return [env.key.decode() for _, env in frames]


def test_journal_acknowledges_in_order_and_reads_back_from_any_frame(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=600, fsync_interval_s=0)
    journal.open()
    seqs = [journal.append(_env(i)) for i in range(10)]
    assert seqs == list(range(1, 11))
    assert journal.unacked_events == 10
    assert len(list(journal.dir.glob("*.seg"))) > 1  # small segments: it rolled
    assert _keys(journal.read(4, 10**9)) == [f"k{i}" for i in range(3, 10)]
    journal.ack(1, 1, partition=0, offset=7)
    journal.ack(3, 1, partition=0, offset=9)  # out of order: the watermark waits for 2
    assert journal.watermark == 1
    journal.ack(2, 1, partition=1, offset=0)
    journal.ack(3, 1, partition=0, offset=9)
    assert (journal.watermark, journal.unacked_events) == (3, 7)
    assert journal.offsets == {0: 9, 1: 0}
    assert journal.retained_acked_events() == 3  # kept: the broker may still lose them
    journal.close(clean=True)  # not everything acknowledged: the directory stays
    assert journal.dir.is_dir()


def test_a_new_journal_adopts_a_gone_publishers_log_acked_and_unacked(tmp_path: Path) -> None:
    gone = Journal(tmp_path, fsync_interval_s=None)
    gone.open()
    for i in range(5):
        gone.append(_env(i))
    gone.ack(1, 1, 2, 40)
    gone.ack(2, 1, 3, 41)
    gone.sync(force=True)
    gone.close(clean=False)

    alive = Journal(tmp_path)
    alive.open()
    other = Journal(tmp_path)
    other.open()  # a live journal is never adopted
    assert other.adopted_events == 0
    other.close(clean=True)
    assert not other.dir.exists()

    assert alive.adopted_events == 5
    assert (alive.watermark, alive.unacked_events) == (2, 3)
    assert alive.offsets == {2: 40, 3: 41}  # what the broker is checked against
    assert _keys(alive.read(alive.watermark + 1, 10**9)) == ["k2", "k3", "k4"]
    assert _keys(alive.read(alive.first_seq, 10**9)) == [f"k{i}" for i in range(5)]
    assert not gone.dir.exists()
    for seq in range(3, 6):
        alive.ack(seq, 1, 0, seq)
    alive.close(clean=True)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_a_torn_frame_is_skipped_and_retention_forgets_the_oldest(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=600, retain_bytes=1200)
    journal.open()
    for i in range(12):
        journal.append(_env(i))
    for seq in range(1, 13):
        journal.ack(seq, 1, 0, seq)
    assert journal.forgotten_events > 0
    assert journal.first_seq == journal.forgotten_events + 1
    assert journal.retained_bytes <= 1200 + 600
    assert journal.take_forgotten() > 0
    assert journal.take_forgotten() == 0
    journal.append(_env(12))
    journal.append(_env(13))
    seg = sorted(journal.dir.glob("*.seg"))[-1]
    journal.close(clean=False)
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a crash in the middle of the last frame
    survivor = Journal(tmp_path)
    survivor.open()
    assert survivor.torn_frames == 1
    assert _keys(survivor.read(survivor.watermark + 1, 10**9)) == ["k12"]
    survivor.close(clean=False)


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


async def test_a_close_cancelled_once_still_keeps_everything(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    """Ctrl-C while the publisher flushes to an unreachable broker: the close goes on (the
    cancellation is raised once it is done), everything is on disk, and the next publisher
    delivers each event once."""
    events = _sends(300)
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    pub = Publisher(dead, topics.events, state_dir=tmp_path, delivery_timeout_s=1,
                    flush_timeout_s=1.0)  # fmt: skip
    await pub.start()
    for e in events:
        pub.emit(e)
    closing = asyncio.create_task(pub.aclose())
    await asyncio.sleep(0.2)  # flushing: the broker never answers
    closing.cancel()
    try:
        await closing
        raise AssertionError("the cancellation was swallowed")
    except asyncio.CancelledError:
        pass
    stats = pub.statistics()
    assert (stats.sent, stats.in_spool) == (0, 300)
    await pub.aclose()  # idempotent
    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub2:
        await pub2.flush(10)
        assert pub2.statistics().sent == 300
    async with EventReader(stack.kafka_bootstrap, topics.events, deadletter_topic=None) as r:
        assert await read_events(r, 300) == events


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


async def test_broker_restart_loses_nothing_it_had_acknowledged(
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
            await _wait_for(lambda: not pub.statistics().connected)
            assert pub.statistics().in_spool >= 300

            broker = EmbeddedStack(settings)
            await broker.start()  # same port, topics created again
            for e in after:
                pub.emit(e)
            await pub.flush(30)
            stats = pub.statistics()
        assert stats.in_spool == 0
        assert stats.send_failures >= 1
        assert stats.losses_detected >= 1
        assert stats.resent >= 300  # what the broker had acknowledged, then forgot
        assert stats.unrepaired == 0
        async with EventReader(broker.kafka_bootstrap, topic, deadletter_topic=None) as r:
            got_after = await read_events(r, 900, then_idle_s=2)
    finally:
        await broker.stop()
    assert got_before == before
    # Each once. Envelopes aiokafka was still retrying when the loss was found may land on the
    # new broker before the re-sent older ones: the order of a key holds apart from those.
    assert len(got_after) == 900
    assert sorted(got_after, key=lambda e: e.seq) == before + during + after  # type: ignore[attr-defined]


async def test_a_topic_the_broker_lacks_is_created_before_anything_is_sent(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    # Tansu acknowledges records for a topic it does not have, and drops them: the publisher
    # must never send before the topic exists.
    topic = f"test.missing.{tmp_path.name[-8:]}.{id(tmp_path):x}"
    events = _sends(200)
    async with Publisher(stack.kafka_bootstrap, topic, state_dir=tmp_path, partitions=3) as pub:
        for e in events:
            pub.emit(e)
        await pub.flush(15)
    async with EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as r:
        assert await r.read(max_events=200, idle_timeout_s=3) == events
        assert len(r._consumer.partitions_for_topic(topic) or ()) == 3


async def test_events_are_on_disk_within_the_window_even_if_the_loop_never_yields(
    tmp_path: Path,
) -> None:
    dead = f"127.0.0.1:{free_port('127.0.0.1')}"
    pub = Publisher(dead, "t", state_dir=tmp_path, delivery_timeout_s=0.5, durable_window_ms=20)
    await pub.start()
    try:
        t0 = asyncio.get_running_loop().time()
        n = 0
        while asyncio.get_running_loop().time() - t0 < 0.2:  # no await: the loop is held
            pub.emit(_sends(1, start=n)[0])
            n += 1
        stats = pub.statistics()
        assert stats.spooled > 0
        assert stats.buffered < n
        assert stats.spooled + stats.buffered == n
    finally:
        await pub.aclose()
    assert pub.statistics().spooled == n  # on close, everything is on disk


async def test_a_restart_while_idle_is_found_by_flush_and_repaired(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", kafka_port=free_port("127.0.0.1"))
    settings = settings.model_copy(update={"redis_url": "redis://unused"})
    topic = settings.topic_events
    events = _sends(100)
    broker = EmbeddedStack(settings)
    await broker.start()
    try:
        async with Publisher(
            broker.kafka_bootstrap, topic, state_dir=tmp_path, retry_backoff_s=0.1
        ) as pub:
            for e in events:
                pub.emit(e)
            await pub.flush(10)
            await broker.stop()
            broker = EmbeddedStack(settings)
            await broker.start()
            await pub.flush(20)  # nothing new: the check finds the loss and sends again
            stats = pub.statistics()
        assert stats.losses_detected == 1
        assert stats.resent == 100
        assert stats.unrepaired == 0
        async with EventReader(broker.kafka_bootstrap, topic, deadletter_topic=None) as r:
            assert await r.read(idle_timeout_s=2) == events
    finally:
        await broker.stop()
    assert not list((tmp_path / "spool" / topic).glob("*/*.seg"))  # clean close: gone


async def test_events_are_on_disk_within_the_window_while_the_broker_hangs(
    tmp_path: Path,
) -> None:
    # A "broker" that accepts connections and never answers: the delivery task waits on it.
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pub = Publisher(
        f"127.0.0.1:{port}", "t", state_dir=tmp_path, delivery_timeout_s=30, durable_window_ms=50
    )
    try:
        await pub.start()
        await asyncio.sleep(0.2)  # the delivery task is now stuck connecting
        pub.emit(_sends(1)[0])
        t0 = asyncio.get_running_loop().time()
        await _wait_for(lambda: pub.statistics().spooled == 1, timeout_s=10)
        assert asyncio.get_running_loop().time() - t0 < 5
        assert pub.statistics().buffered == 0
    finally:
        server.close()
        await pub.aclose()


async def test_what_the_log_no_longer_holds_is_reported_lost_never_silently(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path / "state", kafka_port=free_port("127.0.0.1"))
    settings = settings.model_copy(update={"redis_url": "redis://unused"})
    topic = settings.topic_events
    reports = []
    broker = EmbeddedStack(settings)
    await broker.start()
    try:
        async with Publisher(
            broker.kafka_bootstrap,
            topic,
            state_dir=tmp_path,
            retry_backoff_s=0.1,
            batch_events=50,
            retain_bytes=1,  # keep no acknowledged batch beyond the current segment
            on_loss=reports.append,
        ) as pub:
            pub._journal.segment_bytes = 2000  # small segments, so old ones are dropped
            pub.attribute_to("exp-1", "run-1")
            sent = _sends(1000)
            for e in sent:
                pub.emit(e)
                await asyncio.sleep(0)
            await pub.flush(10)
            await broker.stop()
            broker = EmbeddedStack(settings)
            await broker.start()
            await pub.flush(20)
            stats = pub.statistics()
            in_local_log = [
                ev
                for _, env in pub._journal.read(pub._journal.first_seq, 1 << 30)
                for ev in codec.decode_batch(env.value, dict(env.headers))
            ]
        assert stats.losses_detected == 1
        assert stats.unrepaired > 0
        assert stats.unrepaired + stats.resent == 1000  # each event either sent again or named
        (report,) = reports
        assert report.unrepaired == stats.unrepaired
        assert "new one" in report.reason
        async with EventReader(broker.kafka_bootstrap, topic, deadletter_topic=None) as r:
            got = await r.read(idle_timeout_s=2)
        # The log says so itself: one log.loss event naming the exact number of events really
        # missing from the topic.
        (loss,) = [ev for ev in got if isinstance(ev, LogLoss)]
        missing = {e.event_id for e in sent} - {ev.event_id for ev in got}
        assert loss.unrepaired == stats.unrepaired == len(missing)
        assert loss.resent == stats.resent == len(got) - 1
        assert (loss.topic, loss.experiment_id, loss.run_id) == (topic, "exp-1", "run-1")
        assert loss.reason == report.reason
        assert report.event == loss
        # On local disk too, like every event it publishes, queued after what it sent again.
        assert in_local_log[-1] == loss
        # Before it, what it sent again (retain_bytes=1: how much of that the log still keeps
        # depends on when its segments rolled and were acknowledged).
        resent = {ev.event_id for ev in got if not isinstance(ev, LogLoss)}
        assert {ev.event_id for ev in in_local_log[:-1]} <= resent
    finally:
        await broker.stop()


def test_a_spool_left_by_an_earlier_version_is_adopted_and_sent(tmp_path: Path) -> None:
    import struct
    import zlib

    # The earlier spool's frame: "ASP1" | length | crc | key, headers, count, value.
    def legacy(env: codec.Envelope) -> bytes:
        parts = [struct.pack(">H", len(env.key)), env.key, struct.pack(">H", len(env.headers))]
        for name, value in env.headers:
            parts += [struct.pack(">H", len(name)), name.encode()]
            parts += [struct.pack(">I", len(value)), value]
        body = b"".join([*parts, struct.pack(">I", env.count), env.value])
        return struct.pack(">4sII", b"ASP1", len(body), zlib.crc32(body)) + body

    old = tmp_path / "1234-abcd"
    old.mkdir()
    (old / "lock").touch()
    (old / "000000000001000000000000.seg").write_bytes(b"".join(legacy(_env(i)) for i in range(3)))
    journal = Journal(tmp_path)
    journal.open()
    assert journal.adopted_events == 3
    assert journal.unacked_events == 3  # no acknowledgement state: all of it is sent
    assert _keys(journal.read(journal.watermark + 1, 10**9)) == ["k0", "k1", "k2"]
    journal.close(clean=False)


def test_a_configured_publisher_takes_the_event_log_settings(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        eventlog_durable_window_ms=250,
        eventlog_fsync_interval_ms=40,
        eventlog_retain_bytes=123_456,
    )
    pub = Publisher.configured("127.0.0.1:9", settings, linger_ms=7)
    assert (pub.topic, pub.linger_s, pub.durable_window_s) == (settings.topic_events, 0.007, 0.25)
    journal = pub._journal
    assert (journal.retain_bytes, journal.fsync_interval_s) == (123_456, 0.04)
    assert journal.root == settings.state_dir / "spool" / settings.topic_events
    assert Publisher.configured("127.0.0.1:9", settings, topic="other").topic == "other"
