"""Publisher and reader against the real embedded broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING

import orjson
import zstandard
from aiokafka import AIOKafkaProducer

from schemas.events import Send
from spine.eventlog import EncodedEventSink, codec
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import HEADER_SOURCE, EventReader
from tests.eventlog.samples import every_kind, sample
from tests.reading import read_events

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event
    from spine.stack import EmbeddedStack
    from tests.eventlog.conftest import Topics


def _sends(n: int, tenant: str = "acme", session: str = "s1") -> list[Event]:
    return [sample(Send, tenant=tenant, session=session, seq=i, bytes=100) for i in range(n)]


async def _read_all(stack: EmbeddedStack, topic: str, n: int, **kw: object) -> list[Event]:
    async with EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None, **kw) as reader:  # type: ignore[arg-type]
        return await read_events(reader, n)


async def test_every_kind_round_trips_through_kafka(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = every_kind() + every_kind()
    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub:
        for e in events:
            pub.emit(e)
        await pub.flush(10)
        stats = pub.statistics()
    assert stats.emitted == stats.sent == len(events)
    assert stats.spooled == len(events)  # every event went to the local log first
    assert stats.in_spool == 0
    assert stats.losses_detected == 0
    assert stats.batches_sent >= 1
    got = await _read_all(stack, topics.events, len(events))
    assert sorted(got, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    # Within a partition key, the order of emission is kept.
    for key in {codec.partition_key(e) for e in events}:
        assert [e for e in got if codec.partition_key(e) == key] == [
            e for e in events if codec.partition_key(e) == key
        ]


async def test_order_per_key_across_many_batches_and_keys(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = []
    for i in range(3000):
        events.append(sample(Send, tenant=f"t{i % 3}", session=f"s{i % 3}", seq=i, bytes=1))
    async with Publisher(
        stack.kafka_bootstrap, topics.events, state_dir=tmp_path, batch_events=100
    ) as pub:
        for i, e in enumerate(events):
            pub.emit(e)
            if i % 250 == 0:
                await asyncio.sleep(0)  # let batches go out while emitting
    assert pub.statistics().sent == 3000
    got = await _read_all(stack, topics.events, 3000)
    assert len(got) == 3000
    per_tenant: dict[str, list[int]] = defaultdict(list)
    for e in got:
        assert isinstance(e, Send)
        per_tenant[e.tenant].append(e.seq)
    for seqs in per_tenant.values():
        assert seqs == sorted(seqs)


async def test_encoded_and_model_events_share_a_key_in_emit_order(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = _sends(600)
    async with Publisher(
        stack.kafka_bootstrap, topics.events, state_dir=tmp_path, batch_events=70
    ) as pub:
        assert isinstance(pub, EncodedEventSink)
        for i, e in enumerate(events):
            if i % 2:
                pub.emit_encoded(codec.partition_key(e), codec.encode_event(e))
            else:
                pub.emit(e)
        await pub.flush(10)
        stats = pub.statistics()
    assert stats.emitted == stats.sent == 600
    assert await _read_all(stack, topics.events, 600) == events


async def test_duplicates_are_dropped_by_event_id(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = _sends(10)
    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub:
        for e in events + events[:4]:
            pub.emit(e)
    async with EventReader(stack.kafka_bootstrap, topics.events, deadletter_topic=None) as reader:
        got = await read_events(reader, len(events), then_idle_s=1.0)
        assert reader.statistics().duplicates == 4
    assert got == events


async def test_malformed_records_go_to_the_dead_letter_topic(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    good = _sends(3)
    partly = [orjson.loads(e.model_dump_json()) for e in _sends(2, session="s2")]
    partly.append({"kind": "session.send", "bytes": "lots"})
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.events, b"\x00garbage", key=b"k", partition=0)
        await producer.send_and_wait(
            topics.events, zstandard.ZstdCompressor().compress(orjson.dumps(partly)), partition=0
        )
        env = codec.encode_envelope("k", good)
        await producer.send_and_wait(
            topics.events, env.value, key=env.key, headers=list(env.headers), partition=0
        )
    finally:
        await producer.stop()
    async with EventReader(
        stack.kafka_bootstrap, topics.events, deadletter_topic=topics.deadletter
    ) as reader:
        got = await read_events(reader, 5)
        stats = reader.statistics()
    assert [e.event_id for e in got] == [p["event_id"] for p in partly[:2]] + [
        e.event_id for e in good
    ]
    assert stats.deadlettered_records == 2
    assert stats.rejected_events == 1
    consumer_reader = EventReader(stack.kafka_bootstrap, topics.deadletter, deadletter_topic=None)
    async with consumer_reader:
        records = []
        for _ in range(20):
            batches = await consumer_reader._consumer.getmany(timeout_ms=200)
            records += [r for rs in batches.values() for r in rs]
            if len(records) >= 2:
                break
    assert len(records) == 2
    by_value = {r.value: dict(r.headers) for r in records}
    garbage_headers = by_value[b"\x00garbage"]
    assert garbage_headers[HEADER_SOURCE] == f"{topics.events}/0/0".encode()
    assert b"not JSON" in garbage_headers[codec.HEADER_ERROR]
    rejected = next(h for v, h in by_value.items() if v != b"\x00garbage")
    assert b"item 2" in rejected[codec.HEADER_ERROR]
    assert b"bytes" in rejected[codec.HEADER_ERROR]


async def test_reader_in_a_consumer_group(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    events = _sends(50)
    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub:
        for e in events:
            pub.emit(e)
    got = await _read_all(
        stack, topics.events, 50, group_id=f"g-{topics.events}", session_timeout_ms=6000
    )
    assert got == events


async def test_check_records_carry_no_events_and_no_key(
    stack: EmbeddedStack, topics: Topics, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from analyzers.forward import experiment_of_key

    async with Publisher(stack.kafka_bootstrap, topics.events, state_dir=tmp_path) as pub:
        for e in every_kind():
            pub.emit(e)
        await pub.flush(10)  # checks the broker: one check record per partition written to
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.events, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = [r for rs in (await consumer.getmany(timeout_ms=3000)).values() for r in rs]
    finally:
        await consumer.stop()
    checks = [r for r in records if dict(r.headers)[codec.HEADER_COUNT] == b"0"]
    assert checks
    for r in checks:
        assert r.key is None
        assert experiment_of_key(r.key) is None  # the analyzer workers route nothing
        assert r.value is not None
        assert codec.decode_batch(r.value, dict(r.headers)) == []
