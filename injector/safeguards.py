"""Safeguards: abort conditions over the analyzers' live results.

:class:`SafeguardMonitor` is a pure fold over ``result.*`` events — feed it results in order and
it says when a safeguard trips. :class:`RedisResults` feeds it from Redis: the analyzers append
each result event, as JSON in field ``event``, to the stream
``aftershock:{experiment_id}:results:stream``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from schemas.events import parse_event
from schemas.experiment import (
    AvailabilitySafeguard,
    EpisodeSafeguard,
    ErrorRateSafeguard,
    IsolationSafeguard,
    LatencySafeguard,
    Safeguard,
)
from schemas.results import Availability, FailureEpisode, IsolationViolation, LatencySummary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import redis.asyncio as aioredis

    from schemas.results import ResultBase


def results_stream_key(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:results:stream"


def _at_ns(r: ResultBase) -> int:
    return r.window_end_ns or r.ts_ns


@dataclass
class _Track:
    breach_since_ns: int | None = None
    count: int = 0


@dataclass
class SafeguardMonitor:
    safeguards: list[Safeguard]
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def observe(self, result: ResultBase) -> str | None:
        """Fold one result in; returns why the run must abort, or None."""
        for i, sg in enumerate(self.safeguards):
            reason = self._observe_one(i, sg, result)
            if reason:
                return reason
        return None

    def _scoped(self, sg: Safeguard, r: ResultBase) -> bool:
        if sg.target is None:
            return r.scope == "overall"
        return r.scope == "target" and r.scope_key == sg.target

    def _observe_one(self, i: int, sg: Safeguard, r: ResultBase) -> str | None:
        track = self._tracks.setdefault(i, _Track())
        where = f" on {sg.target}" if sg.target else ""
        if isinstance(sg, IsolationSafeguard):
            if isinstance(r, IsolationViolation) and (
                sg.target is None or r.scope_key == sg.target
            ):
                track.count += 1
                if track.count > sg.above:
                    return (
                        f"isolation violation{where}: tenant {r.victim_tenant} received "
                        f"{r.origin_tenant}'s message ({track.count} seen, limit {sg.above})"
                    )
            return None
        if isinstance(sg, EpisodeSafeguard):
            if isinstance(r, FailureEpisode) and self._scoped(sg, r):
                lasted_s = (
                    (r.duration_ms or 0) / 1000
                    if r.ended_ns is not None
                    else (_at_ns(r) - r.started_ns) / 1e9
                )
                if lasted_s > sg.above:
                    return f"failure episode{where} lasted {lasted_s:.1f}s > {sg.above:g}s"
            return None
        breach: bool
        detail: str
        if isinstance(sg, ErrorRateSafeguard) and isinstance(r, Availability):
            rate = 100.0 - r.availability_pct
            breach, detail = rate > sg.above_pct, f"error rate {rate:.1f}% > {sg.above_pct:g}%"
        elif isinstance(sg, AvailabilitySafeguard) and isinstance(r, Availability):
            breach = r.availability_pct < sg.below_pct
            detail = f"availability {r.availability_pct:.1f}% < {sg.below_pct:g}%"
        elif isinstance(sg, LatencySafeguard) and isinstance(r, LatencySummary):
            p99 = r.p99_ms
            breach = p99 is not None and p99 > sg.above_ms
            detail = f"p99 latency {p99}ms > {sg.above_ms:g}ms"
        else:
            return None
        if not self._scoped(sg, r):
            return None
        if not breach:
            track.breach_since_ns = None
            return None
        now = _at_ns(r)
        if track.breach_since_ns is None:
            track.breach_since_ns = (r.window_start_ns or now) if sg.for_ == 0 else now
        held_s = (now - track.breach_since_ns) / 1e9
        if held_s >= sg.for_:
            return f"{detail}{where} for {held_s:.1f}s (limit {sg.for_:g}s)"
        return None


async def redis_results(
    client: aioredis.Redis, experiment_id: str, *, block_ms: int = 500
) -> AsyncIterator[ResultBase]:
    """Result events of ``experiment_id`` appended to its Redis stream from now on."""
    key = results_stream_key(experiment_id)
    last = "$"
    while True:
        batches: Any = await client.xread({key: last}, block=block_ms, count=100)
        for _stream, entries in batches or ():
            for entry_id, fields in entries:
                last = entry_id
                raw = fields.get(b"event") or fields.get("event")
                if raw is None:
                    continue
                try:
                    ev = parse_event(raw)
                except ValidationError:
                    continue
                if ev.kind.startswith("result.") and ev.experiment_id == experiment_id:
                    yield ev  # type: ignore[misc]
