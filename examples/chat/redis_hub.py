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
from .telemetry import tracer

if TYPE_CHECKING:
    from opentelemetry import trace
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "chat-control"
"""Always subscribed, so the subscriber connection exists even with no chat channel."""
PUBLISH_BATCH = 512


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
        self._keys: set[str] = set()
        self._confirms: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._queue: asyncio.Queue[_Publish] = asyncio.Queue()
        self._last_pong = 0.0
        self.outages = 0

    @property
    def state(self) -> RedisState:
        return self._state

    # -- used by the message service ------------------------------------------------------

    async def subscribe(self, key: str) -> None:
        """Subscribe ``key`` and wait until Redis confirms it."""
        if self._state is not RedisState.UP or self._pubsub is None:
            raise RedisDown("redis is down")
        self._keys.add(key)
        waiter = asyncio.get_running_loop().create_future()
        self._confirms.setdefault(key, deque()).append(waiter)
        try:
            async with asyncio.timeout(self._config.redis_timeout_s):
                await self._pubsub.subscribe(key)
                await waiter
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisDown(f"redis subscribe failed: {exc!r}") from exc

    async def unsubscribe(self, key: str) -> None:
        self._keys.discard(key)
        if self._state is RedisState.UP and self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
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

    async def run(self) -> None:
        """Connect, serve until the connection fails, back off, repeat. Runs until cancelled."""
        delay_s = self._config.backoff_initial_s
        while True:
            self._move(RedisState.CONNECTING)
            was_up = False
            try:
                await self._serve_connection()
            except* (RedisError, OSError, TimeoutError, RedisDown) as group:
                log.warning("redis connection lost: %r", group.exceptions[0])
                was_up = self._state is RedisState.UP
            if was_up:
                delay_s = self._config.backoff_initial_s
            self._move(RedisState.DOWN)
            if self._defects.enabled(Bug.SLOW_RECOVERY):
                # The defect: a fixed pause before even trying to reconnect.
                await asyncio.sleep(self._defects.slow_recovery_s)
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
        try:
            async with asyncio.timeout(timeout_s):
                await client.ping()
                await pubsub.subscribe(CONTROL_CHANNEL)
                while True:
                    msg = await pubsub.get_message(timeout=timeout_s)
                    if msg and msg["type"] == "subscribe":
                        break
                if self._keys:
                    await pubsub.subscribe(*self._keys)
            self._pubsub = pubsub
            self._last_pong = asyncio.get_running_loop().time()
            self._move(RedisState.UP)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(pubsub))
                tg.create_task(self._ping(pubsub))
                tg.create_task(self._publish_batches(client))
        finally:
            self._pubsub = None
            self._fail_pending()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        while True:
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            kind = msg["type"]
            if kind == "message":
                self._on_message(msg["channel"].decode(), msg["data"])
            elif kind == "pong":
                self._last_pong = loop.time()
            elif kind == "subscribe":
                waiters = self._confirms.get(msg["channel"].decode())
                if waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)

    async def _ping(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        interval_s = self._config.redis_ping_interval_s
        while True:
            await asyncio.sleep(interval_s)
            if loop.time() - self._last_pong > interval_s + self._config.redis_timeout_s:
                raise RedisDown("redis stopped answering pings")
            async with asyncio.timeout(self._config.redis_timeout_s):
                await pubsub.ping()

    async def _publish_batches(self, client: aioredis.Redis) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < PUBLISH_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with asyncio.timeout(self._config.redis_timeout_s):
                    async with client.pipeline(transaction=False) as pipe:
                        for item in batch:
                            pipe.publish(item.key, item.data)
                        await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
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
