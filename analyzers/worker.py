"""The Faust worker: a thin adapter feeding :class:`analyzers.live.LiveAnalyzers`.

Two stages, both at-least-once:

1. ``forward`` (:mod:`analyzers.forward`, a plain consumer group) reads the events topic
   (records keyed ``<experiment>/...``) and re-keys every record, unchanged, by its
   experiment id onto ``<app_id>-by-experiment``, with an ``aftershock-src`` header naming its
   source ``partition:offset``. All records of one experiment then reach one worker, whichever
   partitions the generators wrote to.
2. ``analyze`` decodes each record and feeds the experiment's analyzer. Records are acked only
   after a checkpoint has written the analyzer's snapshot to the ``state`` table (its
   changelog topic), and Faust flushes the producer before committing offsets, so a restarted
   worker resumes from a snapshot at least as new as its committed offsets; records it sees
   again are skipped by their source offset (no double counting).

A timer publishes changed results to the results topic and to Redis, and checkpoints.
Several workers with the same ``app_id`` share the partitions.

Stored results are the record of a run. A new group starts reading the events topic where the
stored results of runs logged to that topic say analysis stopped (``start_at="stored"``: the
start of the earliest experiment whose analysis is not final, else the end of the latest final
one; runs of other topics are ignored), at a chosen
time, or at the beginning; and an experiment whose stored results are final and cover the
events this worker has (its first event is not after their end) is never written again.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import start_http_server
from redis.asyncio import Redis

from analyzers import metrics
from analyzers.core import AnalyzerConfig
from analyzers.decode import decode_record
from analyzers.errors import SnapshotError
from analyzers.forward import HEADER_SRC, Forwarder, experiment_of_key
from analyzers.live import LiveAnalyzers
from analyzers.spans import SpanGraphBuilder, decode_spans
from spine.errors import DecodeError
from spine.eventlog import codec
from spine.eventlog.reader import FETCH_MAX_WAIT_MS
from spine.store import Span, read_span, resume_point_ns, write_results, write_span

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from analyzers.core.engine import AnalyzerStats
    from analyzers.core.events import Fed
    from spine.settings import Settings

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 32 * 1024 * 1024
CHECKPOINT_COST_SHARE = 0.1
"""Checkpoints are spaced so that snapshotting takes at most this share of the worker's time:
a snapshot that took 0.2 s is followed by the next one no sooner than 2 s later."""
GC_THRESHOLDS = (10_000, 50, 100)
"""Decoding allocates many short-lived objects while the analyzers hold many long-lived ones;
with the default thresholds (700, 10, 10) collections that walk that state take half of the
decode time."""


@dataclass(frozen=True)
class WorkerOptions:
    app_id: str = "aftershock-analyzers"
    publish_interval_s: float = 0.25
    checkpoint_interval_s: float = 5.0
    metrics_port: int | None = None
    config: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    datadir: Path | None = None
    start_at: Literal["stored", "earliest"] | int = "stored"
    """Where a new group starts reading the events topic: where the stored results say
    analysis stopped, the beginning, or a time (ms since the epoch)."""


def _headers(message: Any) -> dict[str, bytes]:
    raw = message.headers or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v for k, v in items}


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust fixes 1,500 ms and has no setting for it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


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
        self._published_stats: dict[str, AnalyzerStats] = {}
        self._parked: dict[str, Any] = {}
        self._stored: dict[str, Span | None] = {}
        """Per experiment, what its stored results covered when this worker took it up."""
        self._frozen: set[str] = set()
        self._marked_final: set[str] = set()
        self._analyze_stream: Any = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_gap_s = opts.checkpoint_interval_s
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
            # Un-acked records are redelivered and skipped by offset; waiting for them to be
            # acked at shutdown would wait for a checkpoint that no longer comes.
            stream_wait_empty=False,
            web_enabled=False,
            datadir=str(datadir),
        )
        app.transport.Consumer = _Consumer  # type: ignore[misc]  # Faust has no hook for it
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
        app.task(self._forward)
        app.agent(self.by_experiment, name="analyze")(self._analyze)
        app.agent(self.spans_topic, name="spans")(self._spans)
        app.timer(opts.publish_interval_s)(self._publish)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        if opts.metrics_port is not None:
            app.task(self._serve_metrics)

    # --- stage 1 ----------------------------------------------------------------------------

    async def _start_ms(self) -> int | None:
        start = self.options.start_at
        if start == "earliest":
            return None
        if start == "stored":
            ns = await resume_point_ns(self.redis, self.settings.topic_events)
            return None if ns is None else ns // 1_000_000
        return start

    async def _forward(self) -> None:
        assert self.settings.kafka_bootstrap is not None
        start_ms = await self._start_ms()
        log.info("new groups read the events topic from %s", start_ms or "the beginning")
        forwarder = Forwarder(
            self.settings.kafka_bootstrap,
            self.settings.topic_events,
            self.by_experiment.get_topic_name(),
            f"{self.options.app_id}-forward",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_ms=self.settings.kafka_heartbeat_ms,
            max_record_bytes=MAX_RECORD_BYTES,
            start_ms=start_ms,
        )
        await forwarder.run()

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
            events: Sequence[Fed]
            try:
                events = decode_record(msg.value, headers)
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
            if self._checkpoint_due():
                await self._checkpoint()

    async def _open(self, exp: str, partition: int) -> None:
        self._configs[exp] = await self._load_config(exp)
        if exp not in self._stored:
            self._stored[exp] = await read_span(self.redis, exp)
        blob = self.state.get(exp.encode())
        parked = self._parked.pop(exp, None)
        try:
            self.live.open(exp, partition, blob, parked)
        except SnapshotError as exc:
            log.error("experiment %s: %s; starting from scratch", exp, exc)
            self.live.open(exp, partition, None, parked)
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

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self._checkpoint_gap_s

    async def _checkpoint(self) -> None:
        started = time.monotonic()
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
        self._last_checkpoint = now = time.monotonic()
        self._checkpoint_gap_s = max(
            self.options.checkpoint_interval_s, (now - started) / CHECKPOINT_COST_SHARE
        )

    # --- spans ------------------------------------------------------------------------------

    async def _spans(self, stream: Any) -> None:
        async for value in stream:
            try:
                spans = decode_spans(value)
            except ValueError as exc:
                metrics.DEADLETTER.inc()
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
                marking = a.finished and exp not in self._marked_final
                if not changed and stats == self._published_stats.get(exp) and not marking:
                    continue
                if self._is_frozen(exp):
                    continue
                self._published_stats[exp] = stats
                for r in changed:
                    metrics.RESULTS.labels(r.kind).inc()
                if changed:
                    env = codec.encode_envelope(f"{exp}/result", changed)
                    await self.results_topic.send(
                        key=env.key, value=env.value, headers=list(env.headers)
                    )
                try:
                    await write_results(self.redis, exp, changed, asdict(stats))
                    if a.first_ns is not None:
                        end = max(a.last_ns, a.ended_ns or 0)
                        span = Span(
                            a.run_id or "-", a.first_ns, end, a.finished, self.settings.topic_events
                        )
                        await write_span(self.redis, exp, span)
                        if a.finished:
                            self._marked_final.add(exp)
                except Exception as exc:  # Redis trouble must not stop the analysis
                    log.warning("cannot write results to Redis: %r", exc)
                    self._published_stats.pop(exp, None)
                    for r in changed:
                        self.live.slots[exp].published.pop(r.event_id, None)
            metrics.BUFFERED.set(buffered)
        if self._pending_acks and self._checkpoint_due():
            await self._checkpoint()

    def _is_frozen(self, exp: str) -> bool:
        """The experiment's stored results are final and cover what this worker analysed:
        they are the run's record, not to be rewritten."""
        if exp in self._frozen:
            return True
        stored = self._stored.get(exp)
        first = self.live.slots[exp].analyzer.first_ns
        if stored is None or not stored.final:
            return False
        if first is None:
            return True  # nothing folded yet: nothing to say over the stored record
        if first > stored.end_ns:
            return False  # a later run of the experiment
        log.warning(
            "experiment %s: stored results of run %s are final; not rewriting them",
            exp,
            stored.run_id,
        )
        self._frozen.add(exp)
        return True

    async def _on_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        """Park the experiments of revoked partitions and forget their un-acked records:
        whoever gets the partition next is handed them again, and the changelog holds a
        snapshot at least as new as the committed offsets."""
        topic = self.by_experiment.get_topic_name()
        parts = {tp.partition for tp in revoked if tp.topic == topic}
        if not parts:
            return
        self._parked.update(self.live.drop(parts))
        self._pending_acks = [
            ev
            for ev in self._pending_acks
            if not (ev.message.topic == topic and ev.message.partition in parts)
        ]

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
        # Faust's start-up spinner sets the root logger to DEBUG and leaves it there, so
        # aiokafka built a debug record for every fetch and request (~4 % of the worker).
        worker.spinner = None
        # Modules, the app and its services live as long as the process: keep them out of
        # every collection, and collect the young generation less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
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
