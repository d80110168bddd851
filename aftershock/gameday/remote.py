"""The live dashboard of a game day running elsewhere, read from Redis.

``aftershock run`` publishes its dashboard snapshot every second at ``aftershock:{id}:live``
(expiring after 5 s). Without it (the game day runs as separate injector, generators and
analyzer workers), the snapshot is the workers' ``result.live`` record
(``aftershock:{id}:results:*``) under the injector's run state (``aftershock:{id}:state``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from aftershock.gameday.live import LiveSnapshot, live_figures
from injector.control import RunState, state_key
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
    """The analyzers' ``result.live`` record under the injector's run state."""
    return LiveSnapshot.of(
        live_figures(results),
        title=experiment_id,
        experiment_id=experiment_id,
        run_id=state.run_id if state else "",
        elapsed_s=state.offset_s if state else 0.0,
        planned_s=0.0,
        phase=state.status if state else "unknown",
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
