"""The Kafka publisher: an :class:`~spine.eventlog.EventSink` that batches, bounds its
memory and loses nothing.

``emit()`` encodes the event and appends its bytes to a per-key buffer (``emit_encoded()`` takes
bytes a producer encoded itself), so no event object outlives the call and the garbage collector
has nothing to walk in the buffers; a background task seals buffers into envelopes after
``linger_ms``, hands them to aiokafka and watches their delivery. Where an
envelope goes, in order:

* memory (``ready``), while the broker answers and less than ``max_memory_bytes`` are waiting;
* the disk spool, once that bound is reached, or once a delivery failed (broker unreachable),
  and for every later envelope while the spool is not empty, so the order of a key is kept;
* the broker: the spool is drained, oldest first, as soon as a send succeeds again.

On close the buffers are flushed within ``flush_timeout_s``; what could not be sent stays in
the spool, and the next publisher on the same state directory and topic delivers it.
Delivery is at least once: readers drop duplicates by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from spine.errors import EventLogError, SpoolError
from spine.eventlog.codec import (
    Compression,
    Envelope,
    encode_event,
    encoded_envelope,
    partition_key,
)
from spine.eventlog.spool import Spool

if TYPE_CHECKING:
    from types import TracebackType

    from schemas.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublisherStatistics:
    """A snapshot; counts are events unless named otherwise."""

    emitted: int
    sent: int
    """Acknowledged by the broker (a re-sent envelope counts again)."""
    spooled: int
    """Written to the disk spool (in total, since start)."""
    in_spool: int
    buffered: int
    """Accepted and not yet acknowledged or spooled (buffers, memory queue, in flight)."""
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
        batch_events: int = 1000,
        max_buffered_events: int = 50_000,
        max_memory_bytes: int = 64 * 1024 * 1024,
        max_in_flight: int = 64,
        delivery_timeout_s: float = 10.0,
        retry_backoff_s: float = 0.5,
        flush_timeout_s: float = 10.0,
        compression: Compression = Compression.ZSTD,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.linger_s = linger_ms / 1000
        self.batch_events = batch_events
        self.max_buffered_events = max_buffered_events
        self.max_memory_bytes = max_memory_bytes
        self.max_in_flight = max_in_flight
        self.delivery_timeout_s = delivery_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.flush_timeout_s = flush_timeout_s
        self.compression = compression
        self._spool = Spool(state_dir / "spool" / topic)
        self._buffers: dict[str, list[bytes]] = {}
        self._buffered = 0
        self._ready: deque[Envelope] = deque()
        self._ready_bytes = 0
        self._in_flight: deque[tuple[Envelope, asyncio.Future[object]]] = deque()
        self._offline = False
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._cpu0 = 0.0
        self._emitted = self._sent = self._spooled = self._batches = self._bytes = 0
        self._failures = 0
        self._encode_s = 0.0

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
        """Open the spool and start delivering. Never fails because the broker is down."""
        self._cpu0 = time.process_time()
        self._spool.open()
        self._offline = bool(self._spool)  # a crashed run's events go first
        await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"publisher:{self.topic}")

    async def aclose(self) -> None:
        """Flush within ``flush_timeout_s``, spool the rest, stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.shield(self._close())
        except asyncio.CancelledError:
            await self._close()  # second chance: the flush must not be lost to Ctrl-C
            raise

    async def _close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush(self.flush_timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._seal_all()
        self._go_offline()  # whatever is left goes to disk
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                async with asyncio.timeout(5):
                    await self._producer.stop()
            self._producer = None
        self._spool.close()

    # --- the EventSink side -------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Accept an event. Never blocks, never raises for delivery problems."""
        self.emit_encoded(partition_key(event), encode_event(event))

    def emit_encoded(self, key: str, data: bytes) -> None:
        """Accept an event as ``encode_event(event)`` bytes under ``partition_key(event)``
        (see :class:`~spine.eventlog.sink.EncodedEventSink`)."""
        if self._closed:
            raise EventLogError("emit() on a closed publisher")
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = []
        buf.append(data)
        self._emitted += 1
        self._buffered += 1
        if len(buf) >= self.batch_events:
            self._seal(key)
        elif self._buffered >= self.max_buffered_events:
            self._seal_all()
        if not self._wake.is_set():
            self._wake.set()

    def statistics(self) -> PublisherStatistics:
        in_flight = sum(env.count for env, _ in self._in_flight)
        ready = sum(env.count for env in self._ready)
        return PublisherStatistics(
            emitted=self._emitted,
            sent=self._sent,
            spooled=self._spooled,
            in_spool=self._spool.events,
            buffered=self._buffered + ready + in_flight,
            batches_sent=self._batches,
            bytes_sent=self._bytes,
            send_failures=self._failures,
            connected=self._producer is not None and not self._offline,
            cpu_s=time.process_time() - self._cpu0,
            encode_s=self._encode_s,
        )

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every event emitted so far is acknowledged (spooled ones included).

        Raises ``TimeoutError`` after ``timeout_s``; nothing is lost then, it is still queued.
        """
        self._seal_all()
        self._wake.set()
        async with asyncio.timeout(timeout_s):
            while not self._is_idle():
                self._idle.clear()
                self._wake.set()
                await self._idle.wait()

    def _is_idle(self) -> bool:
        return not (self._buffers or self._ready or self._in_flight or self._spool)

    # --- batching -----------------------------------------------------------------------------

    def _seal(self, key: str) -> None:
        items = self._buffers.pop(key)
        self._buffered -= len(items)
        t0 = time.thread_time()
        env = encoded_envelope(key, items, self.compression)
        self._encode_s += time.thread_time() - t0
        self._enqueue(env)

    def _seal_all(self) -> None:
        for key in list(self._buffers):
            self._seal(key)

    def _enqueue(self, env: Envelope) -> None:
        full = self._ready_bytes + len(env.value) > self.max_memory_bytes
        if self._offline or self._spool or full:
            self._to_spool(env)
        else:
            self._ready.append(env)
            self._ready_bytes += len(env.value)

    def _to_spool(self, env: Envelope) -> None:
        try:
            self._spool.append(env)
        except SpoolError:
            # Cannot persist: keep it in memory past the bound rather than drop it.
            log.exception("spool write failed; keeping %d events in memory", env.count)
            self._ready.append(env)
            self._ready_bytes += len(env.value)
            return
        self._spooled += env.count

    def _go_offline(self) -> None:
        """Move everything unacknowledged to the front of the spool, oldest first."""
        self._offline = True
        moved = [env for env, _ in self._in_flight] + list(self._ready)
        self._in_flight.clear()
        self._ready.clear()
        self._ready_bytes = 0
        try:
            self._spool.prepend(moved)
        except SpoolError:
            log.exception("spool write failed; keeping %d envelopes in memory", len(moved))
            self._ready.extend(moved)
            self._ready_bytes = sum(len(env.value) for env in moved)
            return
        self._spooled += sum(env.count for env in moved)

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
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("broker %s unreachable (%r); spooling", self.bootstrap, exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        return True

    async def _run(self) -> None:
        while True:
            if self._is_idle():
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            if self._buffers:
                await asyncio.sleep(self.linger_s)
                self._seal_all()
            if self._offline or self._producer is None:
                await self._probe()
                continue
            if not self._ready and self._spool:
                self._refill()
            await self._send_ready()
            await self._check_in_flight()
            await asyncio.sleep(0)

    def _refill(self) -> None:
        """Online with an empty memory queue: take the spool's oldest envelopes back."""
        while self._ready_bytes < self.max_memory_bytes // 2:
            env = self._spool.peek()
            if env is None:
                return
            self._spool.pop()
            self._ready.append(env)
            self._ready_bytes += len(env.value)

    async def _send_ready(self) -> None:
        assert self._producer is not None
        while self._ready and len(self._in_flight) < self.max_in_flight:
            env = self._ready[0]
            try:
                fut = await self._producer.send(
                    self.topic, value=env.value, key=env.key, headers=list(env.headers)
                )
            except (KafkaError, OSError) as exc:
                self._delivery_failed(exc)
                return
            self._ready.popleft()
            self._ready_bytes -= len(env.value)
            fut.add_done_callback(_retrieve)
            self._in_flight.append((env, fut))
        if self._in_flight and len(self._in_flight) >= self.max_in_flight:
            await asyncio.wait([self._in_flight[0][1]])

    async def _check_in_flight(self) -> None:
        if self._in_flight and not self._ready and not self._buffers:
            # Idle otherwise: wait for the oldest delivery instead of spinning.
            await asyncio.wait([self._in_flight[0][1]], timeout=self.linger_s or None)
        while self._in_flight and self._in_flight[0][1].done():
            env, fut = self._in_flight[0]
            exc = fut.exception()
            if exc is not None:
                self._delivery_failed(exc)
                return
            self._in_flight.popleft()
            self._delivered(env)

    def _delivered(self, env: Envelope) -> None:
        self._sent += env.count
        self._batches += 1
        self._bytes += len(env.value)

    def _delivery_failed(self, exc: BaseException) -> None:
        self._failures += 1
        log.warning("delivery to %s failed (%r); spooling until it is back", self.bootstrap, exc)
        self._go_offline()

    async def _probe(self) -> None:
        """Offline: send the spool's oldest envelope; success means the broker is back."""
        if not await self._connect():
            await asyncio.sleep(self.retry_backoff_s)
            return
        assert self._producer is not None
        env = self._spool.peek()
        if env is not None:
            try:
                async with asyncio.timeout(self.delivery_timeout_s):
                    await self._producer.send_and_wait(
                        self.topic, value=env.value, key=env.key, headers=list(env.headers)
                    )
            except (KafkaError, OSError, TimeoutError) as exc:
                self._failures += 1
                log.info("broker %s still unreachable (%r)", self.bootstrap, exc)
                await asyncio.sleep(self.retry_backoff_s)
                return
            self._spool.pop()
            self._delivered(env)
        self._offline = False


def _retrieve(fut: asyncio.Future[object]) -> None:
    """Mark a delivery's exception as seen (it is handled by ``_check_in_flight``)."""
    if not fut.cancelled():
        fut.exception()
