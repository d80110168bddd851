"""Safeguards: abort conditions over the analyzers' live results.

:class:`SafeguardMonitor` is a pure fold over ``result.*`` events — feed it results in order and
it says when a safeguard trips. :class:`RedisResults` feeds it from the live results the
analyzers keep in Redis under ``aftershock:{experiment_id}:results:*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.experiment import (
    AvailabilitySafeguard,
    EpisodeSafeguard,
    ErrorRateSafeguard,
    IsolationSafeguard,
    LatencySafeguard,
    Safeguard,
)
from schemas.results import Availability, FailureEpisode, IsolationGroup, LatencySummary
from spine.store import prefix as store_prefix
from spine.store import read_results, result_field

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from schemas.results import ResultBase


def _at_ns(r: ResultBase) -> int:
    return r.window_end_ns or r.ts_ns


@dataclass
class _Track:
    breach_since_ns: int | None = None
    groups: dict[str, int] = field(default_factory=dict)
    """Isolation: the latest count of each violation group."""


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
            # Groups carry exact counts and are updated as more violations arrive; the
            # individual violation records are only a few examples of each.
            if isinstance(r, IsolationGroup) and (sg.target is None or r.target == sg.target):
                track.groups[r.group_id] = r.count
                seen = sum(track.groups.values())
                if seen > sg.above:
                    return (
                        f"isolation violation{where}: tenant {r.victim_tenant} received "
                        f"{r.origin_tenant}'s message ({seen} seen, limit {sg.above})"
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


class RedisResults:
    """Results of one experiment as the analyzers update them in Redis (layout of
    :mod:`spine.store`: one hash per result kind holding the latest record per key, and
    ``...:results:updated_ns`` bumped on every write)."""

    def __init__(self, client: aioredis.Redis, experiment_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self._seen: dict[str, str] = {}
        self._last_update: bytes | str | None = None

    async def poll(self) -> list[ResultBase]:
        """Records new or changed since the last poll, oldest first."""
        updated = await self.client.get(f"{store_prefix(self.experiment_id)}:updated_ns")
        if updated is None or updated == self._last_update:
            return []
        self._last_update = updated
        fresh: list[ResultBase] = []
        for r in await read_results(self.client, self.experiment_id):
            key = f"{r.kind}/{result_field(r)}"
            raw = r.model_dump_json()
            if self._seen.get(key) != raw:
                self._seen[key] = raw
                fresh.append(r)
        return sorted(fresh, key=_at_ns)
