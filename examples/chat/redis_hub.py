"""The message service's Redis side: one subscriber connection, batched publishes, and a
supervisor that notices an outage and reconnects with backoff.

States move CONNECTING → UP → DOWN → CONNECTING ...; only UP serves. The ``slow_recovery``
defect makes DOWN last ``slow_recovery_s`` longer before the first reconnect attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config import Bug, ChatConfig, Defects
from .errors import RedisDown
from .liveness import Silence
from .telemetry import tracer

if TYPE_CHECKING:
    from opentelemetry import trace
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "chat-control"
"""Always subscribed, so the subscriber connection exists even with no chat channel."""
PUBLISH_BATCH = 512
CONNECTION_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)
"""What a lost Redis connection looks like from the client. RuntimeError is uvloop's word for
a write on a transport the outage already closed."""


class RedisState(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


_ALLOWED = {
    RedisState.CONNECTING: {RedisState.UP, RedisState.DOWN},
    RedisState.UP: {RedisState.DOWN},
    RedisState.DOWN: {RedisState.CONNECTING},
}

PublishDone = Callable[[Exception | None], None]
MessageHandler = Callable[[str, bytes], None]
StateHandler = Callable[[RedisState], None]


@dataclass(slots=True)
class _Publish:
    key: str
    data: str
    done: PublishDone
    span: trace.Span


class RedisHub:
    def __init__(
        self,
        redis_url: str,
        *,
        config: ChatConfig,
        defects: Defects,
        on_message: MessageHandler,
        on_state: StateHandler,
    ) -> None:
        self._url = redis_url
        self._config = config
        self._defects = defects
        self._on_message = on_message
        self._on_state = on_state
        self._state = RedisState.CONNECTING
        self._stopping = False
        self._client: aioredis.Redis | None = None
        self._pubsub_conn: PubSub | None = None
        self._keys: set[str] = set()
        self._confirms: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._queue: asyncio.Queue[_Publish] = asyncio.Queue()
        self._silence = Silence(config.redis_dead_after_s, config.redis_ping_interval_s, "redis")
        self.outages = 0

    @property
    def state(self) -> RedisState:
        return self._state

    # -- used by the message service ------------------------------------------------------

    async def subscribe(self, key: str) -> None:
        """Subscribe ``key`` and wait until Redis confirms it."""
        self._keys.add(key)  # resubscribed on every reconnect until unsubscribed
        if self._state is not RedisState.UP or self._pubsub is None:
            raise RedisDown("redis is down")
        waiter = asyncio.get_running_loop().create_future()
        self._confirms.setdefault(key, deque()).append(waiter)
        try:
            async with asyncio.timeout(self._config.redis_timeout_s):
                await self._pubsub.subscribe(key)
                await waiter
        except CONNECTION_ERRORS as exc:
            raise RedisDown(f"redis subscribe failed: {exc!r}") from exc

    async def unsubscribe(self, key: str) -> None:
        self._keys.discard(key)
        if self._state is RedisState.UP and self._pubsub is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                async with asyncio.timeout(self._config.redis_timeout_s):
                    await self._pubsub.unsubscribe(key)

    def publish(self, key: str, data: str, done: PublishDone) -> None:
        """Queue a publish; ``done`` gets None once Redis took it, else the error."""
        span = tracer.start_span("redis.publish", kind=SpanKind.CLIENT)
        span.set_attribute("messaging.destination.name", key)
        if self._state is not RedisState.UP:
            _finish(span, done, RedisDown("redis is down"))
            return
        self._queue.put_nowait(_Publish(key, data, done, span))

    # -- supervisor -----------------------------------------------------------------------

    async def stop(self, run_task: asyncio.Task[None]) -> None:
        """End ``run_task`` (the task running ``run()``).

        Cancelling alone is not enough: the Redis client can swallow a cancellation that lands
        while it connects, and the task then serves on. So also flag the loop to end and cut
        the connections under the client, until the task is done.
        """
        self._stopping = True
        while not run_task.done():
            run_task.cancel()
            await self._disconnect()
            await asyncio.wait({run_task}, timeout=0.1)

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self._pubsub_conn is not None and self._pubsub_conn.connection is not None:
                await self._pubsub_conn.connection.disconnect(nowait=True)
            if self._client is not None:
                await self._client.connection_pool.disconnect(inuse_connections=True)

    async def run(self) -> None:
        """Connect, serve until the connection fails, back off, repeat; until cancelled or
        stopped."""
        delay_s = self._config.backoff_initial_s
        while not self._stopping:
            self._move(RedisState.CONNECTING)
            error: BaseException | None = None
            try:
                await self._serve_connection()
            except* (*CONNECTION_ERRORS, RedisDown) as group:
                error = group.exceptions[0]
            except* Exception as group:
                # The client has races of its own when a connection dies under concurrent use
                # (e.g. AttributeError on a writer it already dropped). A service under test
                # must outlive its dependency's outage: treat it as a lost connection.
                error = group.exceptions[0]
                log.warning("redis client failed oddly, taken as a lost connection: %r", error)
                log.debug("redis client failure", exc_info=error)
            lost = self._state is RedisState.UP  # as opposed to a failed reconnect attempt
            self._move(RedisState.DOWN)
            if lost:
                log.warning("redis connection lost: %r", error)
                delay_s = self._config.backoff_initial_s
                if self._defects.enabled(Bug.SLOW_RECOVERY):
                    # The defect: a fixed pause before even trying to reconnect.
                    await asyncio.sleep(self._defects.slow_recovery_s)
            else:
                log.debug("redis reconnect failed: %r", error)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self._config.backoff_max_s)

    async def _serve_connection(self) -> None:
        timeout_s = self._config.redis_timeout_s
        client = aioredis.Redis.from_url(
            self._url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        pubsub = client.pubsub()
        self._client, self._pubsub_conn = client, pubsub
        try:
            async with asyncio.timeout(2 * timeout_s):
                await client.ping()
                await pubsub.subscribe(CONTROL_CHANNEL)
                while True:
                    msg = await pubsub.get_message(timeout=timeout_s)
                    if msg and msg["type"] == "subscribe":
                        break
                if self._keys:
                    await pubsub.subscribe(*self._keys)
            if self._stopping:
                return
            self._pubsub = pubsub
            self._silence.restart()
            self._move(RedisState.UP)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(pubsub))
                tg.create_task(self._ping(pubsub))
                tg.create_task(self._publish_batches(client))
        finally:
            self._pubsub = self._client = self._pubsub_conn = None
            self._fail_pending()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            self._silence.heard()
            kind = msg["type"]
            if kind == "message":
                self._on_message(msg["channel"].decode(), msg["data"])
            elif kind == "subscribe":
                waiters = self._confirms.get(msg["channel"].decode())
                if waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)

    async def _ping(self, pubsub: PubSub) -> None:
        # A Redis that stops answering without closing the connection (a stalled path) is
        # only noticed by silence: ping it and expect to hear something back. The check runs
        # in this loop rather than in a task of its own, so a silent Redis is reported even
        # if a cancellation gets lost inside the client library.
        while True:
            await asyncio.sleep(self._config.redis_ping_interval_s)
            try:
                self._silence.tick()
            except TimeoutError:
                # Unblock the reader, which may wait forever on a stalled socket.
                if pubsub.connection is not None:
                    await pubsub.connection.disconnect(nowait=True)
                raise
            async with asyncio.timeout(self._config.redis_timeout_s):
                await pubsub.ping()

    async def _publish_batches(self, client: aioredis.Redis) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < PUBLISH_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with asyncio.timeout(2 * self._config.redis_timeout_s):
                    async with client.pipeline(transaction=False) as pipe:
                        for item in batch:
                            pipe.publish(item.key, item.data)
                        await pipe.execute()
            except CONNECTION_ERRORS as exc:
                err = RedisDown(f"redis publish failed: {exc!r}")
                for item in batch:
                    _finish(item.span, item.done, err)
                raise err from exc
            for item in batch:
                _finish(item.span, item.done, None)

    def _fail_pending(self) -> None:
        err = RedisDown("redis connection lost")
        while not self._queue.empty():
            item = self._queue.get_nowait()
            _finish(item.span, item.done, err)
        for waiters in self._confirms.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(err)
                    waiter.exception()  # retrieved: a waiter may be gone after a timeout
        self._confirms.clear()

    def _move(self, state: RedisState) -> None:
        if state is self._state:
            return
        if state not in _ALLOWED[self._state]:
            raise RuntimeError(f"redis state cannot go {self._state.value} -> {state.value}")
        self._state = state
        if state is RedisState.DOWN:
            self.outages += 1
        log.info("redis %s", state.value)
        self._on_state(state)


def _finish(span: trace.Span, done: PublishDone, error: Exception | None) -> None:
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()
    done(error)
