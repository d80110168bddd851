"""The Kafka publisher: an :class:`~spine.eventlog.EventSink` that batches, writes every batch
to a local log before Kafka, notices when the broker loses what it acknowledged, and sends it
again.

``emit()`` encodes the event and appends its bytes to a per-key buffer (``emit_encoded()`` takes
bytes a producer encoded itself), so no event object outlives the call. Buffers are sealed into
envelopes after ``linger_ms`` (at the latest ``durable_window_ms`` after their first event, even
when the caller's loop does not yield), and each sealed envelope is appended to the local log
(:class:`~spine.eventlog.spool.Journal`) before it is handed to aiokafka. Envelopes then go, in
order, from memory (up to ``max_memory_bytes``; beyond that they are read back from the log) to
the broker; a failed delivery sends everything unacknowledged again, oldest first, once the
broker answers.

The broker is checked, not trusted: an acknowledged offset that goes backwards on a partition,
the topic missing from the broker's metadata, or a check record (an empty envelope) landing at
or below an offset already acknowledged means the broker lost acknowledged records (Tansu's
memory storage forgets everything on restart). The publisher then re-creates the topic if it is
missing and sends again every envelope its log still holds; what the log no longer holds
(``retain_bytes``) is counted in ``unrepaired``, logged as an error, passed to ``on_loss`` and
written to the topic as a ``log.loss`` event (:class:`~schemas.events.LogLoss`, attributed to
the experiment and run given to :meth:`Publisher.attribute_to`), queued after what is sent
again.

On close the buffers are flushed and checked within ``flush_timeout_s``; what could not be sent
stays in the log, and the next publisher on the same state directory and topic delivers it.
Delivery is at least once: readers drop duplicates by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Self

import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from schemas.events import LogLoss
from spine.errors import EventLogError, SpoolError
from spine.eventlog.codec import (
    Compression,
    Envelope,
    encode_event,
    encoded_envelope,
    partition_key,
)
from spine.eventlog.spool import RETAIN_BYTES, SEGMENT_BYTES, Journal
from spine.stackstate import PublisherRecord

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from aiokafka.structs import RecordMetadata

    from schemas.events import Event
    from spine.settings import Settings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class LossReport:
    """The broker lost records it had acknowledged."""

    reason: str
    resent: int
    """Events of the local log sent again."""
    unrepaired: int
    """Acknowledged events the local log no longer held (``retain_bytes``): lost for good."""
    event: LogLoss | None = None
    """The ``log.loss`` event the publisher wrote to the topic (when ``unrepaired``), for a
    caller that also records events elsewhere (an in-process analysis, the run's own log)."""

    def describe(self) -> str:
        """One line for a console: the reason, and what was sent again and lost for good."""
        if self.unrepaired:
            return (
                f"event log: {self.reason}; {self.unrepaired} events are lost for good, "
                f"{self.resent} sent again"
            )
        return f"event log: {self.reason}; {self.resent} events sent again"


def lost_for_good(n: int) -> str:
    """The line a command prints before it exits non-zero for ``n`` events lost for good."""
    return (
        f"the event log lost {n} events for good: the broker lost events it had acknowledged "
        "that the publisher's local log no longer held"
    )


@dataclass(frozen=True, slots=True)
class PublisherStatistics:
    """A snapshot; counts are events unless named otherwise."""

    emitted: int
    """Accepted, the publisher's own ``log.loss`` events included."""
    sent: int
    """Acknowledged by the broker (a re-sent envelope counts again)."""
    spooled: int
    """Written to the local log (in total, since start)."""
    in_spool: int
    """In the local log and not yet acknowledged."""
    buffered: int
    """Accepted and not yet sealed into an envelope: in memory only (the durable window)."""
    batches_sent: int
    bytes_sent: int
    """Record values (compressed) acknowledged by the broker."""
    send_failures: int
    connected: bool
    cpu_s: float
    """CPU time of the whole process since the publisher started."""
    encode_s: float
    """CPU time spent joining and compressing events into envelopes (each event is encoded
    in ``emit()``, on the caller's time)."""
    losses_detected: int = 0
    """Times the broker was found to have lost acknowledged records."""
    resent: int = 0
    """Events sent again from the local log after a detected loss."""
    unrepaired: int = 0
    """Acknowledged events the broker lost that the local log no longer held."""
    adopted: int = 0
    """Events taken over from the local logs of publishers that were gone."""
    log_failures: int = 0
    """Writes to the local log that failed (the envelope was kept in memory)."""

    @property
    def cpu_per_event_us(self) -> float:
        return self.cpu_s / max(self.emitted, 1) * 1e6


class Publisher:
    """Async context manager publishing events to one topic. See the module docstring."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        state_dir: Path = Path(".aftershock"),
        linger_ms: float = 5.0,
        durable_window_ms: float = 100.0,
        batch_events: int = 1000,
        max_buffered_events: int = 50_000,
        max_memory_bytes: int = 64 * 1024 * 1024,
        max_in_flight: int = 64,
        delivery_timeout_s: float = 10.0,
        retry_backoff_s: float = 0.5,
        flush_timeout_s: float = 10.0,
        check_interval_s: float = 1.0,
        fsync_interval_ms: float | None = 100.0,
        retain_bytes: int = RETAIN_BYTES,
        partitions: int = 4,
        compression: Compression = Compression.ZSTD,
        on_loss: Callable[[LossReport], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.linger_s = linger_ms / 1000
        self.durable_window_s = max(durable_window_ms, linger_ms) / 1000
        self.batch_events = batch_events
        self.max_buffered_events = max_buffered_events
        self.max_memory_bytes = max_memory_bytes
        self.max_in_flight = max_in_flight
        self.delivery_timeout_s = delivery_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.flush_timeout_s = flush_timeout_s
        self.check_interval_s = check_interval_s
        self.partitions = partitions
        self.compression = compression
        self.on_loss = on_loss
        self.on_sealed: Callable[[Envelope], None] | None = None
        """Handed every batch as it is sealed (before it goes to the local log and the
        broker): a run's own log keeps the same batches (:meth:`RunLogWriter.write_batch`).
        Batches sent again after a loss are not handed again."""
        self._journal = Journal(
            state_dir / "spool" / topic,
            # Segments are dropped whole: a bound below a few segments needs smaller ones.
            segment_bytes=min(SEGMENT_BYTES, max(retain_bytes // 4, 4096)),
            retain_bytes=retain_bytes,
            fsync_interval_s=None if fsync_interval_ms is None else fsync_interval_ms / 1000,
            owner=_owner(bootstrap, topic),
        )
        self._buffers: dict[str, list[bytes]] = {}
        self._buffered = 0
        self._oldest_buffered = 0.0
        self._seal_timer: asyncio.TimerHandle | None = None
        # Envelopes to send, in sequence order: ``_ready`` holds [cursor, _ready_to) in memory,
        # the rest up to the log's ``next_seq`` is read back from the log when there is room.
        self._ready: deque[tuple[int, Envelope]] = deque()
        self._ready_bytes = 0
        self._ready_to = 1
        self._in_flight: deque[tuple[int, Envelope, asyncio.Future[RecordMetadata]]] = deque()
        self._abandoned: list[asyncio.Future[RecordMetadata]] = []
        self._offline = False
        self._topic_checked = False
        self._partitions: int | None = None
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._verified = False
        self._checked_at = 0.0
        self._unprobed = False
        self._repairing = False
        self._cpu0 = 0.0
        self._emitted = self._sent = self._spooled = self._batches = self._bytes = 0
        self._failures = self._losses = self._resent = self._unrepaired = 0
        self._encode_s = 0.0
        self._origin = ("none", "publisher")

    @classmethod
    def configured(
        cls,
        bootstrap: str,
        settings: Settings,
        *,
        topic: str | None = None,
        linger_ms: float = 5.0,
        on_loss: Callable[[LossReport], None] | None = None,
    ) -> Publisher:
        """A publisher of ``topic`` (default: the events topic) as the settings configure the
        event log: its state directory, durable window, fsync interval and retained bytes."""
        return cls(
            bootstrap,
            topic or settings.topic_events,
            state_dir=settings.state_dir,
            linger_ms=linger_ms,
            durable_window_ms=settings.eventlog_durable_window_ms,
            fsync_interval_ms=settings.eventlog_fsync_interval_ms,
            retain_bytes=settings.eventlog_retain_bytes,
            on_loss=on_loss,
        )

    def attribute_to(self, experiment_id: str, run_id: str) -> None:
        """The experiment and run a ``log.loss`` event names (``none``/``publisher`` until
        told): the run whose events this publisher carries."""
        self._origin = (experiment_id, run_id)

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the local log and start delivering (the delivery task connects). Never waits
        for, nor fails because of, the broker."""
        self._cpu0 = time.process_time()
        self._journal.open()
        self._ready_to = self._journal.watermark + 1  # what crashed publishers left goes first
        self._checked_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"publisher:{self.topic}")

    async def aclose(self) -> None:
        """Flush and check within ``flush_timeout_s``, keep the rest on disk, stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        closing = asyncio.ensure_future(self._close())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            # Second chance: the flush must not be lost to one Ctrl-C. The same close goes
            # on (not a second one beside it); a further cancellation cuts it short.
            await closing
            raise

    async def _close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush(self.flush_timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._seal_all()  # whatever is left goes to disk
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await self._producer.stop()
            self._producer = None
        with contextlib.suppress(SpoolError):
            self._journal.close(clean=self._verified and not self._journal)

    # --- the EventSink side -------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Accept an event. Never blocks, never raises for delivery problems."""
        self.emit_encoded(partition_key(event), encode_event(event))

    def emit_encoded(self, key: str, data: bytes) -> None:
        """Accept an event as ``encode_event(event)`` bytes under ``partition_key(event)``
        (see :class:`~spine.eventlog.sink.EncodedEventSink`)."""
        if self._closed:
            raise EventLogError("emit() on a closed publisher")
        self._accept(key, data)

    def _accept(self, key: str, data: bytes) -> None:
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = []
        buf.append(data)
        self._emitted += 1
        self._buffered += 1
        if self._buffered == 1:
            # The delivery task waits on _wake only when nothing is buffered (_is_idle): the
            # first event buffered is the one to wake it.
            self._wake.set()
            self._oldest_buffered = time.monotonic()
            if self._seal_timer is None:
                # On disk within the window even while the delivery task waits on the broker.
                with contextlib.suppress(RuntimeError):
                    loop = asyncio.get_running_loop()
                    self._seal_timer = loop.call_later(self.durable_window_s, self._window_ended)
        if len(buf) >= self.batch_events:
            self._seal(key)
        elif self._buffered >= self.max_buffered_events:
            self._seal_all()
        elif (
            not self._buffered & 63
            and time.monotonic() - self._oldest_buffered > self.durable_window_s
        ):
            self._seal_all()  # the caller's loop has not yielded: put it on disk now

    def statistics(self) -> PublisherStatistics:
        j = self._journal
        return PublisherStatistics(
            emitted=self._emitted,
            sent=self._sent,
            spooled=self._spooled,
            in_spool=j.unacked_events,
            buffered=self._buffered,
            batches_sent=self._batches,
            bytes_sent=self._bytes,
            send_failures=self._failures,
            connected=self._producer is not None and not self._offline,
            cpu_s=time.process_time() - self._cpu0,
            encode_s=self._encode_s,
            losses_detected=self._losses,
            resent=self._resent,
            unrepaired=self._unrepaired,
            adopted=j.adopted_events,
            log_failures=j.write_failures,
        )

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every event emitted so far is acknowledged, then check that the broker
        still has what it acknowledged (sending it again if not).

        Raises ``TimeoutError`` after ``timeout_s``; nothing is lost then, it is still queued.
        """
        self._seal_all()
        self._wake.set()
        async with asyncio.timeout(timeout_s):
            while True:
                while not self._is_idle():
                    self._idle.clear()
                    self._wake.set()
                    await self._idle.wait()
                if self._producer is None or self._offline or not self._topic_checked:
                    await asyncio.sleep(0.02)  # the delivery task is reconnecting
                    continue
                if await self._check(probe=True):
                    self._verified = self._is_idle()
                    if self._verified:
                        return

    def _is_idle(self) -> bool:
        return not (self._buffers or self._ready or self._in_flight or self._backlog())

    def _backlog(self) -> bool:
        """Envelopes in the log not yet queued in memory."""
        return self._ready_to < self._journal.next_seq

    # --- batching -----------------------------------------------------------------------------

    def _seal(self, key: str) -> None:
        items = self._buffers.pop(key)
        self._buffered -= len(items)
        t0 = time.thread_time()
        env = encoded_envelope(key, items, self.compression)
        self._encode_s += time.thread_time() - t0
        if self.on_sealed is not None:
            self.on_sealed(env)
        self._enqueue(replace(env, timestamp_ms=time.time_ns() // 1_000_000))

    def seal(self) -> None:
        """Seal every open batch now: on the local log (and :attr:`on_sealed`), on its way to
        the broker."""
        self._seal_all()

    def _seal_all(self) -> None:
        for key in list(self._buffers):
            self._seal(key)
        if self._seal_timer is not None:
            self._seal_timer.cancel()
            self._seal_timer = None

    def _window_ended(self) -> None:
        self._seal_timer = None
        self._seal_all()

    def _enqueue(self, env: Envelope) -> None:
        self._verified = False
        try:
            seq = self._journal.append(env)
        except SpoolError:
            log.exception("local log write failed; keeping %d events in memory", env.count)
            seq = self._journal.next_seq - 1
        else:
            self._spooled += env.count
        if seq == self._ready_to and self._ready_bytes + len(env.value) <= self.max_memory_bytes:
            self._ready.append((seq, env))
            self._ready_bytes += len(env.value)
            self._ready_to = seq + 1

    def _refill(self) -> None:
        """Queue envelopes of the log that did not fit in memory, oldest first."""
        room = self.max_memory_bytes // 2 - self._ready_bytes
        if room <= 0 or not self._backlog():
            return
        try:
            frames = self._journal.read(self._ready_to, room)
        except SpoolError:
            log.exception("cannot read the local log")
            return
        for seq, env in frames:
            self._ready.append((seq, env))
            self._ready_bytes += len(env.value)
            self._ready_to = seq + 1
        if not frames:
            self._ready_to = self._journal.next_seq  # nothing readable is left

    # --- delivery -----------------------------------------------------------------------------

    async def _connect(self) -> bool:
        if self._producer is not None:
            return True
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks=1,
            enable_idempotence=False,
            linger_ms=0,
            max_batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(self.delivery_timeout_s * 1000),
            retry_backoff_ms=100,
        )
        try:
            async with asyncio.timeout(self.delivery_timeout_s):
                await producer.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await producer.stop()
            if not isinstance(exc, (KafkaError, OSError, TimeoutError)):
                raise  # cancelled (closing)
            level = logging.DEBUG if self._offline else logging.WARNING
            log.log(level, "broker %s unreachable (%r); keeping events on disk", self.bootstrap,
                    exc)  # fmt: skip
            self._offline = True
            return False
        self._producer = producer
        self._topic_checked = False
        return True

    async def _run(self) -> None:
        while True:
            if self._is_idle():
                self._sync()
                self._idle.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_interval_s):
                        await self._wake.wait()
            if self._buffers:
                await asyncio.sleep(self.linger_s)
                self._seal_all()
            self._sync()
            if self._offline or self._producer is None or not self._topic_checked:
                await self._probe()
                continue
            if time.monotonic() - self._checked_at >= self.check_interval_s:
                # Metadata every interval; check records once activity stopped (while records
                # are acknowledged, their own offsets show a loss).
                await self._check(probe=self._unprobed and not (self._ready or self._in_flight))
                continue
            if len(self._ready) < self.max_in_flight:
                self._refill()
            await self._send_ready()
            await self._check_in_flight()
            await asyncio.sleep(0)

    def _sync(self) -> None:
        try:
            self._journal.sync()
        except SpoolError:
            log.exception("cannot sync the local log")

    async def _send_ready(self) -> None:
        assert self._producer is not None
        while self._ready and len(self._in_flight) < self.max_in_flight:
            seq, env = self._ready[0]
            try:
                fut = await self._producer.send(
                    self.topic,
                    value=env.value,
                    key=env.key,
                    headers=list(env.headers),
                    timestamp_ms=env.timestamp_ms,
                )
            except (KafkaError, OSError) as exc:
                self._delivery_failed(exc)
                return
            self._ready.popleft()
            self._ready_bytes -= len(env.value)
            fut.add_done_callback(_retrieve)
            self._in_flight.append((seq, env, fut))
        if self._in_flight and len(self._in_flight) >= self.max_in_flight:
            await asyncio.wait([self._in_flight[0][2]])

    async def _check_in_flight(self) -> None:
        if self._in_flight and not self._ready and not self._buffers:
            # Idle otherwise: wait for the oldest delivery instead of spinning.
            await asyncio.wait([self._in_flight[0][2]], timeout=self.linger_s or None)
        while self._in_flight and self._in_flight[0][2].done():
            seq, env, fut = self._in_flight[0]
            exc = fut.exception()
            if exc is not None:
                self._delivery_failed(exc)
                return
            self._in_flight.popleft()
            if not self._delivered(seq, env, fut.result()):
                return

    def _delivered(self, seq: int, env: Envelope, md: RecordMetadata) -> bool:
        """Count an acknowledgement; False (and the loss handled) if its offset shows that the
        broker lost records it had acknowledged."""
        last = self._journal.offsets.get(md.partition)
        if last is not None and md.offset <= last:
            self._lost(
                f"partition {md.partition} acknowledged offset {md.offset}, "
                f"after {last} before: the broker lost records"
            )
            return False
        self._journal.ack(seq, env.count, md.partition, md.offset)
        self._sent += env.count
        self._batches += 1
        self._bytes += len(env.value)
        self._unprobed = True
        self._repairing = False
        return True

    def _unsend(self) -> None:
        """Put everything in flight back at the front of the queue, in order."""
        back = [(seq, env) for seq, env, _ in self._in_flight]
        self._abandon()
        self._ready.extendleft(reversed(back))
        self._ready_bytes += sum(len(env.value) for _, env in back)

    def _delivery_failed(self, exc: BaseException) -> None:
        self._failures += 1
        level = logging.DEBUG if self._offline else logging.WARNING
        log.log(level, "delivery to %s failed (%r); keeping events on disk", self.bootstrap, exc)
        self._offline = True
        self._topic_checked = False  # checked again before anything is sent
        self._unsend()

    def _lost(self, reason: str) -> None:
        """The broker lost acknowledged records: send again everything the log holds."""
        self._losses += 1
        self._abandon()  # what is in flight is sent again too
        self._ready.clear()
        self._ready_bytes = 0
        self._ready_to = self._journal.first_seq
        resent = self._journal.retained_acked_events()
        unrepaired = self._journal.take_forgotten()
        self._journal.reset_offsets()
        self._resent += resent
        self._unrepaired += unrepaired
        self._topic_checked = False
        self._verified = False
        self._repairing = True
        event = None
        if unrepaired:
            # Said in the log itself too, after what is sent again (also while closing).
            experiment_id, run_id = self._origin
            event = LogLoss(
                experiment_id=experiment_id,
                run_id=run_id,
                generator_id="publisher",
                ts_ns=time.time_ns(),
                topic=self.topic,
                reason=reason[:4000],
                unrepaired=unrepaired,
                resent=resent,
            )
            self._accept(partition_key(event), encode_event(event))
        report = LossReport(reason, resent, unrepaired, event)
        if unrepaired:
            log.error(
                "%s on %s: %d acknowledged events are lost for good (no longer in the local "
                "log); sending again the %d it holds",
                reason, self.topic, unrepaired, resent,
            )  # fmt: skip
        else:
            log.warning("%s on %s: sending again %d events", reason, self.topic, resent)
        if self.on_loss is not None:
            self.on_loss(report)

    async def _check(self, *, probe: bool) -> bool:
        """Check the broker still has the topic and, with ``probe``, that a check record lands
        beyond every offset acknowledged on each partition. True when nothing was lost."""
        self._checked_at = time.monotonic()
        if not await self._ensure_topic():
            return False
        if not probe or self._producer is None:
            return True
        partitions = sorted(self._journal.offsets)
        try:
            async with asyncio.timeout(self.delivery_timeout_s):
                mds = [await self._send_check(p) for p in partitions]
        except (KafkaError, OSError, TimeoutError) as exc:
            self._delivery_failed(exc)
            return False
        for md in mds:
            last = self._journal.offsets.get(md.partition)
            if last is not None and md.offset <= last:
                self._lost(
                    f"a check record on partition {md.partition} landed at offset {md.offset}, "
                    f"at or below the acknowledged {last}: the broker lost records"
                )
                return False
        for md in mds:
            self._journal.record_offset(md.partition, md.offset)
        self._unprobed = False
        return True

    async def _send_check(self, partition: int) -> RecordMetadata:
        assert self._producer is not None
        return await self._producer.send_and_wait(
            self.topic,
            value=_CHECK_VALUE,
            key=None,  # no experiment: consumers routing by key skip it
            partition=partition,
            headers=list(_CHECK_HEADERS),
        )

    async def _metadata(self) -> tuple[str | None, int | None]:
        """The broker's cluster id and the topic's partition count (None: no such topic),
        asked without creating the topic."""
        assert self._producer is not None
        client = self._producer.client
        node = client.get_random_node()
        if node is None:
            raise KafkaConnectionError("no broker known")
        resp = await client.send(node, MetadataRequest([self.topic], False))
        cluster_id: str | None = getattr(resp, "cluster_id", None)
        for error_code, name, _, parts in resp.topics:
            if name == self.topic and error_code == 0 and parts:
                return cluster_id, len(parts)
        return cluster_id, None

    async def _ensure_topic(self) -> bool:
        """The broker is the one that acknowledged what the log holds (same cluster id; the
        embedded stack starts each broker with a new one) and has the topic with as many
        partitions as before; a missing topic is created (Tansu acknowledges records for a
        topic it does not have, and drops them). False, and a loss handled, if not."""
        try:
            async with asyncio.timeout(self.delivery_timeout_s):
                cluster_id, parts = await self._metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            self._delivery_failed(exc)
            return False
        known = self._journal.cluster_id
        self._journal.set_cluster_id(cluster_id)
        if known is not None and cluster_id is not None and cluster_id != known:
            if parts is None and not await self._create_topic():
                return False
            if not self._repairing:  # (a loss found otherwise is being repaired already)
                self._lost(f"the broker is a new one (cluster id {cluster_id}, was {known})")
                return False
        if parts and (self._partitions is None or parts == self._partitions):
            self._partitions = parts
            self._topic_checked = True
            return True
        had = self._journal.offsets or self._journal.watermark >= self._journal.first_seq
        if parts:
            self._lost(f"topic now has {parts} partitions, not {self._partitions}")
            self._partitions = parts
            return False
        if not await self._create_topic():
            return False
        if had and not self._repairing:
            self._lost(f"topic {self.topic!r} is gone from the broker")
            return False
        return True

    async def _create_topic(self) -> bool:
        n = self._partitions or self.partitions
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            async with asyncio.timeout(self.delivery_timeout_s):
                await admin.start()
                try:
                    resp = await admin.create_topics([NewTopic(self.topic, n, 1)])
                finally:
                    await admin.close()
        except (KafkaError, OSError, TimeoutError) as exc:
            self._delivery_failed(exc)
            return False
        for _, code, *_ in resp.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                self._delivery_failed(EventLogError(f"cannot create {self.topic}: code {code}"))
                return False
        log.warning("topic %s was missing on %s; created it (%d partitions)", self.topic,
                    self.bootstrap, n)  # fmt: skip
        self._topic_checked = False  # read its metadata again before sending
        return True

    def _abandon(self) -> None:
        self._abandoned += [fut for _, _, fut in self._in_flight if not fut.done()]
        self._in_flight.clear()

    async def _settle(self) -> None:
        """Wait until aiokafka is done with the sends given up on (it retries them on its
        own), so none of them lands after the re-sent copies of older envelopes."""
        pending = [fut for fut in self._abandoned if not fut.done()]
        self._abandoned = []
        if pending:
            await asyncio.wait(pending, timeout=self.delivery_timeout_s * 2)

    async def _probe(self) -> None:
        """Offline or unchecked: connect, check the topic, send the oldest envelope; success
        means the broker is back."""
        await self._settle()
        if not await self._connect():
            await asyncio.sleep(self.retry_backoff_s)
            return
        if not self._topic_checked and not await self._ensure_topic():
            if self._offline:
                await asyncio.sleep(self.retry_backoff_s)
            return
        if not self._topic_checked:
            return
        assert self._producer is not None
        if not self._ready:
            self._refill()
        if self._ready:
            seq, env = self._ready[0]
            try:
                async with asyncio.timeout(self.delivery_timeout_s):
                    md = await self._producer.send_and_wait(
                        self.topic,
                        value=env.value,
                        key=env.key,
                        headers=list(env.headers),
                        timestamp_ms=env.timestamp_ms,
                    )
            except (KafkaError, OSError, TimeoutError) as exc:
                self._failures += 1
                log.info("broker %s still unreachable (%r)", self.bootstrap, exc)
                await asyncio.sleep(self.retry_backoff_s)
                return
            self._ready.popleft()
            self._ready_bytes -= len(env.value)
            if not self._delivered(seq, env, md):
                return
        self._offline = False


_CHECK_VALUE = encoded_envelope("", []).value
_CHECK_HEADERS = encoded_envelope("", []).headers


def _owner(bootstrap: str, topic: str) -> bytes:
    me = psutil.Process()
    rec = PublisherRecord(
        pid=me.pid, create_time=me.create_time(), bootstrap=bootstrap, topic=topic
    )
    return rec.model_dump_json().encode()


def _retrieve(fut: asyncio.Future[RecordMetadata]) -> None:
    """Mark a delivery's exception as seen (it is handled by ``_check_in_flight``)."""
    if not fut.cancelled():
        fut.exception()
