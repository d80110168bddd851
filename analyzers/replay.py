"""Recompute every result from the log: the Kafka events topic or an exported JSONL file.

Records of all partitions are merged by record timestamp and fed, each partition as its own
source, to the same :class:`Analyzer` the live worker uses. ``export`` writes the events as
JSONL (one event per line), sorted by time. Delivery is at least once: every reader here
yields each ``event_id`` once (the first copy read).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from analyzers.core import Analyzer, AnalyzerConfig
from analyzers.core.clock import ManualClock
from analyzers.errors import InputError
from spine.errors import DecodeError, EventFileError
from spine.eventlog import codec
from spine.eventlog.jsonl import iter_jsonl
from spine.eventlog.runlog import EVENTS_DIR, iter_run_events, read_run_batches

if TYPE_CHECKING:
    from collections.abc import Iterator
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


@dataclass
class LogRead:
    """An experiment's records, read from every partition of the events topic."""

    experiment_id: str
    per_part: dict[int, list[tuple[int, int, _Rec]]]

    @property
    def sources(self) -> list[str]:
        return [str(p) for p, recs in sorted(self.per_part.items()) if recs]

    def batches(self) -> Iterator[tuple[str, list[Event] | None]]:
        """``(partition, events)``, partitions interleaved by record timestamp;
        ``(partition, None)`` once a partition has nothing more."""
        left = {p: len(recs) for p, recs in self.per_part.items() if recs}
        merged = heapq.merge(*self.per_part.values(), key=lambda x: (x[0], x[2].partition, x[1]))
        seen: set[str] = set()  # at least once delivery: each event_id is yielded once
        for _, _, rec in merged:
            source = str(rec.partition)
            try:
                decoded = codec.decode(rec.value, rec.headers)
                events = []
                for e in decoded.events:
                    if e.experiment_id == self.experiment_id and e.event_id not in seen:
                        seen.add(e.event_id)
                        events.append(e)
            except DecodeError:
                events = []  # the live worker skips it too
            yield source, events
            left[rec.partition] -= 1
            if not left[rec.partition]:
                yield source, None


async def read_log(
    bootstrap: str, topic: str, experiment_id: str, *, fetch_timeout_ms: int = 500
) -> LogRead:
    """Every record of the experiment (by record key) from every partition, to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    per_part: dict[int, list[tuple[int, int, _Rec]]] = {}
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # topic metadata on first use
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return LogRead(experiment_id, per_part)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        per_part.update({tp.partition: [] for tp in tps})
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
    for recs in per_part.values():
        # Records sent again after a broker lost them keep their first timestamp: in time
        # order they are back among the events of their time.
        recs.sort(key=lambda r: (r[0], r[1]))
    return LogRead(experiment_id, per_part)


def _rec(r: ConsumerRecord[bytes, bytes]) -> _Rec:
    assert r.value is not None
    return _Rec(r.partition, r.offset, r.key, r.value, dict(r.headers or ()))


def read_jsonl(path: Path) -> Iterator[list[Event]]:
    """Batches of events from an export file; a bad line raises :class:`InputError`."""
    out: list[Event] = []
    seen: set[str] = set()
    try:
        for event in iter_jsonl(path):
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            out.append(event)
            if len(out) >= CHUNK:
                yield out
                out = []
    except EventFileError as exc:
        raise InputError(str(exc)) from exc
    if out:
        yield out


def analyze_batches(
    experiment_id: str, batches: Iterator[list[Event]], config: AnalyzerConfig | None = None
) -> list[ResultEvent]:
    """``config`` None: as the run was configured (its log's ``experiment.analysis``)."""
    a = Analyzer(experiment_id, config, config_from_log=config is None)
    for batch in batches:
        a.ingest(batch)
    a.finish()
    return a.results()


async def replay_kafka(
    bootstrap: str, topic: str, experiment_id: str, config: AnalyzerConfig | None = None
) -> list[ResultEvent]:
    """As the live worker does: each partition is a source, so a partition read ahead of
    another does not make the other's events late. The clock stands still: deterministic.
    ``config`` None: as the run was configured (its log's ``experiment.analysis``)."""
    log = await read_log(bootstrap, topic, experiment_id)
    a = Analyzer(experiment_id, config, clock=ManualClock(), config_from_log=config is None)
    a.expect_sources(log.sources)
    for source, batch in log.batches():
        if batch is None:
            a.close_source(source)
        elif batch:
            a.ingest(batch, source)
    a.finish()
    return a.results()


def read_run(run_dir: Path, experiment_id: str) -> Iterator[list[Event]]:
    """Batches of the experiment's events from a run's local log (``<run_dir>/events/``), in
    the order written, each ``event_id`` once; an unreadable log raises :class:`InputError`."""
    try:
        for batch in read_run_batches(run_dir / EVENTS_DIR):
            mine = [ev for ev in batch if ev.experiment_id == experiment_id]
            if mine:
                yield mine
    except EventFileError as exc:
        raise InputError(str(exc)) from exc


def export_run(run_dir: Path, experiment_id: str | None, path: Path) -> int:
    """Write a run's local event log (``<run_dir>/events/``) as JSONL, in the order written,
    each ``event_id`` once; only ``experiment_id``'s events when given."""
    n = 0
    try:
        with path.open("wb") as fh:
            for ev in iter_run_events(run_dir / EVENTS_DIR):
                if experiment_id is None or ev.experiment_id == experiment_id:
                    fh.write(ev.model_dump_json().encode() + b"\n")
                    n += 1
    except EventFileError as exc:
        raise InputError(str(exc)) from exc
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc
    return n


async def export_kafka(bootstrap: str, topic: str, experiment_id: str, path: Path) -> int:
    """Write the experiment's events sorted by (wall-clock time, event id), so a replay of the
    file sees them in order whatever partition they travelled on."""
    log = await read_log(bootstrap, topic, experiment_id)
    events = [ev for _, batch in log.batches() for ev in batch or ()]
    events.sort(key=lambda e: (e.ts_ns, e.event_id))
    with path.open("wb") as fh:
        for ev in events:
            fh.write(ev.model_dump_json().encode() + b"\n")
    return len(events)
