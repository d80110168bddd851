"""The live dashboard of a game day running elsewhere, read from Redis.

``aftershock run`` publishes its dashboard snapshot every second at ``aftershock:{id}:live``
(expiring after 5 s). Without it (the game day runs as separate injector, generators and
analyzer workers), the snapshot is assembled from the analyzers' live results
(``aftershock:{id}:results:*``) and the injector's run state (``aftershock:{id}:state``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from aftershock.gameday.live import LiveSnapshot
from injector.control import RunState, state_key
from schemas.results import (
    Availability,
    FailureEpisode,
    IsolationViolation,
    LatencySummary,
    LoadSummary,
)
from spine.store import read_results

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from schemas.results import ResultEvent

LIVE_TTL_S = 5.0


def live_key(experiment_id: str) -> str:
    return f"aftershock:{experiment_id}:live"


async def publish_snapshot(redis: Redis, snapshot: LiveSnapshot) -> None:
    await redis.set(
        live_key(snapshot.experiment_id),
        json.dumps(dataclasses.asdict(snapshot)),
        px=int(LIVE_TTL_S * 1000),
    )


def from_results(
    experiment_id: str, results: list[ResultEvent], state: RunState | None
) -> LiveSnapshot:
    """What the results store says: rates and p99 over the run so far, not the last seconds."""

    def overall(
        kind: type[LoadSummary] | type[LatencySummary],
    ) -> LoadSummary | LatencySummary | None:
        for r in results:
            if isinstance(r, kind) and r.scope == "overall" and not r.phase:
                return r
        return None

    load = overall(LoadSummary)
    latency = overall(LatencySummary)
    open_episodes = [r for r in results if isinstance(r, FailureEpisode) and r.ended_ns is None]
    avail = [r for r in results if isinstance(r, Availability) and r.scope == "overall"]
    return LiveSnapshot(
        title=experiment_id,
        experiment_id=experiment_id,
        run_id=state.run_id if state else "",
        elapsed_s=state.offset_s if state else 0.0,
        planned_s=0.0,
        phase=state.status if state else "unknown",
        active_faults=tuple(sorted({f for e in open_episodes for f in e.faults_active})),
        sessions=None,
        throughput_per_s=load.throughput_per_s if isinstance(load, LoadSummary) else 0.0,
        error_rate_pct=100.0 * load.error_ratio if isinstance(load, LoadSummary) else 0.0,
        p99_ms=latency.p99_ms if isinstance(latency, LatencySummary) else None,
        open_episodes=tuple(
            sorted(f"{e.scope}:{e.scope_key}" if e.scope_key else e.scope for e in open_episodes)
        ),
        mttr_s=avail[0].mttr_s if avail else None,
        isolation_violations=sum(isinstance(r, IsolationViolation) for r in results),
        events=0,
    )


async def fetch_snapshot(redis: Redis, experiment_id: str) -> LiveSnapshot | None:
    """The run's own snapshot when it publishes one, else one built from the results store;
    None when Redis knows nothing of the experiment."""
    raw = await redis.get(live_key(experiment_id))
    if raw:
        data = json.loads(raw)
        for name in ("active_faults", "open_episodes"):
            data[name] = tuple(data[name])
        return LiveSnapshot(**data)
    results = await read_results(redis, experiment_id)
    raw_state = await redis.get(state_key(experiment_id))
    state = RunState.model_validate_json(raw_state) if raw_state else None
    if not results and state is None:
        return None
    return from_results(experiment_id, results, state)
