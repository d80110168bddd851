"""Stage 1 of the worker: re-key every events-topic record by its experiment id.

A plain consumer group (``<app_id>-forward``) reads the events topic; each record is sent on,
unchanged, to ``<app_id>-by-experiment`` keyed by its experiment id with an
``aftershock-src: <partition>:<offset>`` header, and offsets are committed only after the
producer has flushed (at-least-once). Records without an ``<experiment>/...`` key are split
by experiment (decoded and re-encoded).

Where a new group starts. A partition for which the group has no committed offset is read
from ``start_ms`` (record time, ms since the epoch) on: the forwarder seeks there by bisecting
the partition's offsets on record timestamps (the broker may not look times up) and forwards no
record older than it. ``start_ms`` None reads such partitions from their beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from analyzers import metrics
from spine.errors import DecodeError
from spine.eventlog import codec
from spine.eventlog.reader import FETCH_MAX_WAIT_MS

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord, TopicPartition

    from schemas.events import Event

log = logging.getLogger(__name__)

HEADER_SRC = "aftershock-src"
Out = tuple[bytes, bytes, list[tuple[str, bytes]]]


def experiment_of_key(key: bytes | None) -> str | None:
    if not key:
        return None
    head = key.split(b"/", 1)[0]
    return head.decode("utf-8", "replace") or None


def rekey(record: ConsumerRecord[bytes, bytes]) -> list[Out]:
    """The by-experiment records for one events-topic record."""
    headers = [(k, v) for k, v in (record.headers or ()) if k != HEADER_SRC]
    src = (HEADER_SRC, f"{record.partition}:{record.offset}".encode())
    value = record.value or b""
    exp = experiment_of_key(record.key)
    if exp is not None:
        return [(exp.encode(), value, [*headers, src])]
    try:
        events = codec.decode_batch(value, dict(headers))
    except DecodeError as exc:
        metrics.DEADLETTER.inc()
        log.warning("undecodable record %s:%s: %s", record.partition, record.offset, exc)
        return []
    groups: dict[str, list[Event]] = {}
    for ev in events:
        groups.setdefault(ev.experiment_id, []).append(ev)
    out: list[Out] = []
    for gexp, evs in groups.items():
        env = codec.encode_envelope(gexp, evs)
        out.append((gexp.encode(), env.value, [*env.headers, src]))
    return out


class Forwarder:
    def __init__(
        self,
        bootstrap: str,
        source_topic: str,
        target_topic: str,
        group_id: str,
        *,
        session_timeout_ms: int = 10_000,
        heartbeat_ms: int = 3_000,
        max_record_bytes: int = 32 * 1024 * 1024,
        start_ms: int | None = None,
    ) -> None:
        self.source_topic = source_topic
        self.start_ms = start_ms
        self._fresh: set[int] = set()
        """Partitions this group had no committed offset for: read from ``start_ms``."""
        self._checked: set[int] = set()
        self.target_topic = target_topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_ms,
            # Small per-partition fetches interleave partitions finely while catching up, so
            # no partition runs far ahead of the others (see analyzers.core.ordering).
            max_partition_fetch_bytes=256 * 1024,
            fetch_max_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=False,
            linger_ms=5,
            max_request_size=max_record_bytes,
        )

    async def run(self) -> None:
        """Forward until cancelled."""
        await self._producer.start()
        try:
            await self._consumer.start()
            self._consumer.subscribe([self.source_topic])
            try:
                while True:
                    batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
                    # Every assigned partition is placed before anything is committed: a
                    # commit would otherwise record a start for partitions not yet placed.
                    moved = await self._place(self._consumer.assignment())
                    if not batch:
                        continue
                    for tp, records in batch.items():
                        if tp.partition in moved:
                            continue
                        for record in records:
                            if self._before_start(tp.partition, record.timestamp):
                                continue
                            metrics.RECORDS.labels("forward").inc()
                            for key, value, headers in rekey(record):
                                await self._producer.send(
                                    self.target_topic, value, key=key, headers=headers
                                )
                    await self._producer.flush()
                    await self._consumer.commit()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._consumer.stop())
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._producer.stop())

    def _before_start(self, partition: int, timestamp_ms: int) -> bool:
        return (
            self.start_ms is not None and partition in self._fresh and timestamp_ms < self.start_ms
        )

    async def _place(self, assigned: set[TopicPartition]) -> set[int]:
        """Partitions newly assigned for which the group has no committed offset start at
        ``start_ms``; returns those moved there (what they delivered is dropped: fetched again
        from there)."""
        moved: set[int] = set()
        consumer = self._consumer
        for tp in sorted(assigned):
            if tp.partition in self._checked:
                continue
            self._checked.add(tp.partition)
            if await consumer.committed(tp) is not None:
                continue
            self._fresh.add(tp.partition)
            if self.start_ms is not None:
                consumer.seek(tp, await self._first_at(tp, self.start_ms))
                moved.add(tp.partition)
        return moved

    async def _first_at(self, tp: TopicPartition, start_ms: int) -> int:
        """The first offset of ``tp`` whose record is at or after ``start_ms`` (bisection;
        record times of a partition are close to ordered, and older records are skipped)."""
        consumer = self._consumer
        lo: int = (await consumer.beginning_offsets([tp]))[tp]
        hi: int = (await consumer.end_offsets([tp]))[tp]
        while lo < hi:
            mid = (lo + hi) // 2
            consumer.seek(tp, mid)
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            records = batch.get(tp, [])
            if not records:
                hi = mid
            elif records[0].timestamp < start_ms:
                lo = records[0].offset + 1
            else:
                hi = mid
        return lo
