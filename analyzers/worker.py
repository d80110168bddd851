"""The Faust worker: a thin adapter feeding :class:`analyzers.live.LiveAnalyzers`.

Two stages, both at-least-once:

1. ``forward`` reads the events topic (records keyed ``<experiment>/...``) and re-keys every
   record, unchanged, by its experiment id onto ``<app_id>-by-experiment``, with an
   ``aftershock-src`` header naming its source ``partition:offset``. All records of one
   experiment then reach one worker, whichever partitions the generators wrote to.
2. ``analyze`` decodes each record and feeds the experiment's analyzer. Records are acked only
   after a checkpoint has written the analyzer's snapshot to the ``state`` table (its
   changelog topic), and Faust flushes the producer before committing offsets, so a restarted
   worker resumes from a snapshot at least as new as its committed offsets; records it sees
   again are skipped by their source offset (no double counting).

A timer publishes changed results to the results topic and to Redis, and checkpoints.
Several workers with the same ``app_id`` share the partitions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import start_http_server
from redis.asyncio import Redis

from aftershock.errors import DecodeError
from aftershock.eventlog import codec
from analyzers import metrics
from analyzers.core import AnalyzerConfig
from analyzers.errors import SnapshotError
from analyzers.live import LiveAnalyzers
from analyzers.spans import SpanGraphBuilder, decode_spans
from analyzers.store import write_results

if TYPE_CHECKING:
    from pathlib import Path

    from aftershock.settings import Settings
    from schemas.events import Event

log = logging.getLogger(__name__)

HEADER_SRC = "aftershock-src"
MAX_RECORD_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class WorkerOptions:
    app_id: str = "aftershock-analyzers"
    publish_interval_s: float = 0.25
    checkpoint_interval_s: float = 1.0
    metrics_port: int | None = None
    config: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    datadir: Path | None = None


def _headers(message: Any) -> dict[str, bytes]:
    raw = message.headers or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v for k, v in items}


def experiment_of_key(key: bytes | None) -> str | None:
    if not key:
        return None
    head = key.split(b"/", 1)[0]
    return head.decode("utf-8", "replace") or None


class AnalyzerWorker:
    """Builds the Faust app; ``run()`` blocks in Faust's worker until stopped."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        if not settings.kafka_bootstrap or not settings.redis_url:
            raise ValueError("the analyzer worker needs kafka_bootstrap and redis_url")
        self.settings = settings
        self.options = opts = options or WorkerOptions()
        self.live = LiveAnalyzers(
            self._config_for, sources=[str(p) for p in range(settings.partitions)]
        )
        self._configs: dict[str, AnalyzerConfig] = {}
        self._pending_acks: list[Any] = []
        self._analyze_stream: Any = None
        self._last_checkpoint = time.monotonic()
        self._redis: Redis | None = None
        self._results_producer_topic: Any = None
        datadir = opts.datadir or (settings.state_dir / "faust" / opts.app_id)
        datadir.mkdir(parents=True, exist_ok=True)
        brokers = ";".join(f"kafka://{b}" for b in settings.kafka_bootstrap.split(","))
        self.app = app = faust.App(
            opts.app_id,
            broker=brokers,
            store="memory://",
            processing_guarantee="at_least_once",
            broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.kafka_heartbeat_ms / 1000,
            broker_commit_interval=opts.checkpoint_interval_s,
            consumer_auto_offset_reset="earliest",
            producer_max_request_size=MAX_RECORD_BYTES,
            consumer_max_fetch_size=MAX_RECORD_BYTES,
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            topic_disable_leader=True,
            table_standby_replicas=0,
            stream_recovery_delay=0.0,
            web_enabled=False,
            datadir=str(datadir),
        )
        self.events_topic = app.topic(
            settings.topic_events, key_serializer="raw", value_serializer="raw"
        )
        self.by_experiment = app.topic(
            f"{opts.app_id}-by-experiment",
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        self.spans_topic = app.topic(
            settings.topic_spans, key_serializer="raw", value_serializer="raw"
        )
        self.results_topic = app.topic(
            settings.topic_results, key_serializer="raw", value_serializer="raw"
        )
        self.state = app.Table(
            "state",
            default=None,
            key_type=bytes,
            value_type=bytes,
            schema=faust.Schema(
                key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            ),
            partitions=settings.partitions,
        )
        self.spans = SpanGraphBuilder()
        app.agent(self.events_topic, name="forward")(self._forward)
        app.agent(self.by_experiment, name="analyze")(self._analyze)
        app.agent(self.spans_topic, name="spans")(self._spans)
        app.timer(opts.publish_interval_s)(self._publish)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        if opts.metrics_port is not None:
            app.task(self._serve_metrics)

    # --- stage 1 ----------------------------------------------------------------------------

    async def _forward(self, stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            metrics.RECORDS.labels("forward").inc()
            headers = _headers(msg)
            headers[HEADER_SRC] = f"{msg.partition}:{msg.offset}".encode()
            exp = experiment_of_key(msg.key)
            if exp is not None:
                await self.by_experiment.send(
                    key=exp.encode(), value=msg.value, headers=list(headers.items())
                )
                continue
            # Records without our key: split by experiment (slow path, still in order).
            try:
                events = codec.decode_batch(msg.value, headers)
            except DecodeError as exc:
                metrics.DEADLETTER.inc()
                log.warning("undecodable record %s:%s: %s", msg.partition, msg.offset, exc)
                continue
            groups: dict[str, list[Event]] = {}
            for ev in events:
                groups.setdefault(ev.experiment_id, []).append(ev)
            for gexp, evs in groups.items():
                env = codec.encode_envelope(gexp, evs)
                await self.by_experiment.send(
                    key=gexp.encode(),
                    value=env.value,
                    headers=[*env.headers, (HEADER_SRC, headers[HEADER_SRC])],
                )

    # --- stage 2 ----------------------------------------------------------------------------

    async def _analyze(self, stream: Any) -> None:
        stream = stream.noack()
        self._analyze_stream = stream
        async for event in stream.events():
            msg = event.message
            metrics.RECORDS.labels("analyze").inc()
            exp = experiment_of_key(msg.key)
            headers = _headers(msg)
            if exp is None:
                await stream.ack(event)
                continue
            if not self.live.has(exp):
                await self._open(exp, msg.partition)
            src = _source(headers.get(HEADER_SRC))
            try:
                events = codec.decode_batch(msg.value, headers)
            except DecodeError as exc:
                metrics.DEADLETTER.inc()
                log.warning("undecodable record for %s: %s", exp, exc)
                events = []
            outcome = self.live.feed(exp, src, events)
            if outcome.applied:
                metrics.EVENTS.inc(outcome.events)
            else:
                metrics.SKIPPED.inc()
            self._pending_acks.append(event)
            if time.monotonic() - self._last_checkpoint >= self.options.checkpoint_interval_s:
                await self._checkpoint()

    async def _open(self, exp: str, partition: int) -> None:
        self._configs[exp] = await self._load_config(exp)
        blob = self.state.get(exp.encode())
        try:
            self.live.open(exp, partition, blob)
        except SnapshotError as exc:
            log.error("experiment %s: %s; starting from scratch", exp, exc)
            self.live.open(exp, partition, None)
        metrics.EXPERIMENTS.set(len(self.live.slots))

    async def _load_config(self, exp: str) -> AnalyzerConfig:
        """Per-experiment settings a runner may store at ``aftershock:E:analyzer-config``."""
        raw = await self.redis.get(f"aftershock:{exp}:analyzer-config")
        if not raw:
            return self.options.config
        try:
            return AnalyzerConfig.model_validate_json(raw)
        except ValueError as exc:
            log.error("aftershock:%s:analyzer-config is invalid, using defaults: %s", exp, exc)
            return self.options.config

    def _config_for(self, exp: str) -> AnalyzerConfig:
        return self._configs.get(exp, self.options.config)

    async def _checkpoint(self) -> None:
        for exp, slot in self.live.slots.items():
            if slot.dirty:
                blob = self.live.snapshot(exp)
                key = exp.encode()
                self.state.send_changelog(
                    slot.partition, key, blob, key_serializer="raw", value_serializer="raw"
                )
                self.state.data[key] = blob
                metrics.CHECKPOINTS.inc()
                metrics.SNAPSHOT_BYTES.set(len(blob))
        pending, self._pending_acks = self._pending_acks, []
        stream = self._analyze_stream
        if stream is not None:
            for ev in pending:
                await stream.ack(ev)
        self._last_checkpoint = time.monotonic()

    # --- spans ------------------------------------------------------------------------------

    async def _spans(self, stream: Any) -> None:
        async for value in stream:
            try:
                spans = decode_spans(value)
            except ValueError as exc:
                log.warning("undecodable spans record: %s", exc)
                continue
            edges = self.spans.add(spans)
            if edges:
                self.live.add_edges(edges)

    # --- publishing -------------------------------------------------------------------------

    async def _publish(self) -> None:
        with metrics.PUBLISH_SECONDS.time():
            buffered = 0
            for exp in list(self.live.slots):
                changed = self.live.changed_results(exp)
                a = self.live.slots[exp].analyzer
                stats = a.stats()
                buffered += stats.buffered
                metrics.DUPLICATES.labels(exp).set(stats.duplicates)
                metrics.LATE.labels(exp).set(stats.late)
                if not changed:
                    continue
                for r in changed:
                    metrics.RESULTS.labels(r.kind).inc()
                env = codec.encode_envelope(f"{exp}/result", changed)
                await self.results_topic.send(
                    key=env.key, value=env.value, headers=list(env.headers)
                )
                try:
                    await write_results(self.redis, exp, changed, stats)
                except Exception as exc:  # Redis trouble must not stop the analysis
                    log.warning("cannot write results to Redis: %r", exc)
                    for r in changed:
                        self.live.slots[exp].published.pop(r.event_id, None)
            metrics.BUFFERED.set(buffered)
        if self._pending_acks and (
            time.monotonic() - self._last_checkpoint >= self.options.checkpoint_interval_s
        ):
            await self._checkpoint()

    async def _on_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == self.by_experiment.get_topic_name()}
        if parts:
            await self._checkpoint()
            self.live.drop(parts)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            assert self.settings.redis_url is not None
            self._redis = Redis.from_url(self.settings.redis_url)
        return self._redis

    async def _serve_metrics(self) -> None:
        assert self.options.metrics_port is not None
        start_http_server(
            self.options.metrics_port, self.settings.bind_host, registry=metrics.REGISTRY
        )

    def run(self) -> None:
        """Run the Faust worker in this process until SIGINT/SIGTERM."""
        worker = faust.Worker(self.app, loglevel="WARNING", quiet=True)
        with contextlib.suppress(SystemExit):
            worker.execute_from_commandline()


def _source(raw: bytes | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        part, offset = raw.decode().split(":", 1)
        return int(part), int(offset)
    except ValueError:
        return None


__all__ = ["AnalyzerWorker", "WorkerOptions"]
