"""Which faults were in force while a span ran: announced by the injector, followed in Redis.

The injector writes each fault's window and span to the hash ``aftershock:{experiment_id}:faults``
(field: the fault's id and start; value: a :class:`FaultMark` as JSON) and publishes the same
JSON on the channel of that name, once when the fault takes effect and once when it is reverted.
Generators follow it (:func:`follow`: subscribe, then read the hash) into an
:class:`ActiveFaults` table, and :meth:`ActiveFaults.mark` puts the faults that overlapped a
span on it: the attribute ``aftershock.fault.ids`` and a link to each fault's span. Redis is
what a game day in one process and generators on other hosts share, so both work the same way.
Following is advisory: Redis trouble is retried quietly and never breaks a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

FAULT_IDS_ATTRIBUTE = "aftershock.fault.ids"
FAULT_ID_LINK_ATTRIBUTE = "aftershock.fault.id"
KEY_TTL_S = 86_400
log = logging.getLogger(__name__)


def faults_key(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:faults"


class FaultMark(BaseModel):
    """One fault's window (wall-clock ns; ``end_ns`` None while active) and its span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fault_id: str = Field(min_length=1)
    start_ns: int = Field(ge=0)
    end_ns: int | None = Field(default=None, ge=0)
    trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")

    @property
    def field(self) -> str:
        """Its hash field: the same fault injected twice is two windows."""
        return f"{self.fault_id}@{self.start_ns}"

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns < end_ns and (self.end_ns is None or self.end_ns > start_ns)

    def link(self) -> trace.Link | None:
        if self.trace_id is None or self.span_id is None:
            return None
        ctx = trace.SpanContext(
            trace_id=int(self.trace_id, 16),
            span_id=int(self.span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.Link(ctx, {FAULT_ID_LINK_ATTRIBUTE: self.fault_id})


class ActiveFaults:
    """The fault windows a process has heard of (the latest ``capacity``), by window."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._marks: OrderedDict[str, FaultMark] = OrderedDict()

    def update(self, mark: FaultMark) -> None:
        self._marks[mark.field] = mark
        while len(self._marks) > self._capacity:
            self._marks.popitem(last=False)

    def during(self, start_ns: int, end_ns: int) -> list[FaultMark]:
        """The faults in force at some time in ``[start_ns, end_ns)``, by start."""
        return sorted(
            (m for m in self._marks.values() if m.overlaps(start_ns, end_ns)),
            key=lambda m: (m.start_ns, m.fault_id),
        )

    def mark(self, span: trace.Span, start_ns: int, end_ns: int) -> Sequence[FaultMark]:
        """Put the faults in force while ``span`` ran (``start_ns``..``end_ns``) on it: their
        ids as an attribute and a link to each one's span. Call before the span ends."""
        if not self._marks or not span.is_recording():
            return ()
        marks = self.during(start_ns, end_ns)
        if marks:
            span.set_attribute(FAULT_IDS_ATTRIBUTE, sorted({m.fault_id for m in marks}))
            for m in marks:
                link = m.link()
                if link is not None:
                    span.add_link(link.context, link.attributes)
        return marks


def parse_mark(raw: bytes | str) -> FaultMark | None:
    try:
        return FaultMark.model_validate_json(raw)
    except ValidationError:
        return None


async def announce(redis: Redis, experiment_id: str, mark: FaultMark) -> None:
    """Record ``mark`` in the experiment's hash and publish it (raises Redis errors)."""
    key = faults_key(experiment_id)
    value = mark.model_dump_json(exclude_none=True)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mark.field, value)
        pipe.expire(key, KEY_TTL_S)
        pipe.publish(key, value)
        await pipe.execute()


async def follow(
    redis: Redis,
    experiment_id: str,
    faults: ActiveFaults,
    *,
    retry_s: float = 1.0,
    started: asyncio.Event | None = None,
) -> None:
    """Until cancelled: keep ``faults`` up to date with the experiment's announcements.
    ``started`` is set once the table holds what Redis had when following began."""
    key = faults_key(experiment_id)
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(key)
                # Subscribed first, then read the hash: nothing announced in between is lost.
                for raw in (await redis.hgetall(key)).values():
                    if (mark := parse_mark(raw)) is not None:
                        faults.update(mark)
                if started is not None:
                    started.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    mark = parse_mark(msg["data"]) if msg and msg["type"] == "message" else None
                    if mark is not None:
                        faults.update(mark)
        except (RedisError, OSError) as exc:
            log.debug("following %s: %s; retrying", key, exc)
            await asyncio.sleep(retry_s)
