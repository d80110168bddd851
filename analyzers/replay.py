"""Recompute every result from the log: the Kafka events topic or an exported JSONL file.

Records of all partitions are merged by record timestamp, so the analyzer sees events in
nearly the order they were produced, and fed to the same :class:`Analyzer` the live worker
uses. ``export`` writes the same merged stream as JSONL (one event per line).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from aftershock.errors import DecodeError
from aftershock.eventlog import codec
from analyzers.core import Analyzer, AnalyzerConfig
from analyzers.errors import InputError
from schemas.events import parse_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from aiokafka.structs import ConsumerRecord

    from schemas.events import Event
    from schemas.results import ResultEvent

CHUNK = 2000


@dataclass(frozen=True)
class _Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_log(
    bootstrap: str, topic: str, experiment_id: str, *, fetch_timeout_ms: int = 500
) -> AsyncIterator[list[Event]]:
    """Batches of the experiment's events, partitions merged by record timestamp."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # topic metadata on first use
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        per_part: dict[int, list[tuple[int, int, _Rec]]] = {tp.partition: [] for tp in tps}
        wanted = experiment_id.encode() + b"/"
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=fetch_timeout_ms)
            for tp, records in batch.items():
                for r in records:
                    if r.key is None or r.key.startswith(wanted):
                        per_part[tp.partition].append((r.timestamp, r.offset, _rec(r)))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    merged = heapq.merge(*per_part.values(), key=lambda x: (x[0], x[2].partition, x[1]))
    out: list[Event] = []
    for _, _, rec in merged:
        try:
            decoded = codec.decode(rec.value, rec.headers)
        except DecodeError:
            continue  # the live worker skips it too
        out.extend(e for e in decoded.events if e.experiment_id == experiment_id)
        if len(out) >= CHUNK:
            yield out
            out = []
    if out:
        yield out


def _rec(r: ConsumerRecord[bytes, bytes]) -> _Rec:
    assert r.value is not None
    return _Rec(r.partition, r.offset, r.key, r.value, dict(r.headers or ()))


def read_jsonl(path: Path) -> Iterator[list[Event]]:
    """Batches of events from an export file; a bad line raises :class:`InputError`."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror}") from exc
    with fh:
        out: list[Event] = []
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_event(line))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "<root>"
                raise InputError(f"{path}:{lineno}: {where}: {first['msg']}") from exc
            if len(out) >= CHUNK:
                yield out
                out = []
        if out:
            yield out


def analyze_batches(
    experiment_id: str, batches: Iterator[list[Event]], config: AnalyzerConfig | None = None
) -> list[ResultEvent]:
    a = Analyzer(experiment_id, config)
    for batch in batches:
        a.ingest(batch)
    a.finish()
    return a.results()


async def replay_kafka(
    bootstrap: str, topic: str, experiment_id: str, config: AnalyzerConfig | None = None
) -> list[ResultEvent]:
    a = Analyzer(experiment_id, config)
    async for batch in read_log(bootstrap, topic, experiment_id):
        a.ingest(batch)
    a.finish()
    return a.results()


async def export_kafka(bootstrap: str, topic: str, experiment_id: str, path: Path) -> int:
    n = 0
    with path.open("wb") as fh:
        async for batch in read_log(bootstrap, topic, experiment_id):
            for ev in batch:
                fh.write(ev.model_dump_json().encode() + b"\n")
            n += len(batch)
    return n
