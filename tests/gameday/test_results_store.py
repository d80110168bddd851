"""A new run of an experiment starts from an empty results store: nothing an earlier run left
can pass for its figures (the workers' drain, the safeguards and `aftershock results` read the
store by experiment id)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from schemas.results import Availability, FailureEpisode
from spine.store import clear_results, prefix, read_results, write_results

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack


def _results(experiment_id: str) -> list[Availability | FailureEpisode]:
    ids = {"experiment_id": experiment_id, "run_id": "r", "generator_id": "analyzer"}
    return [
        FailureEpisode(**ids, ts_ns=1, scope="target", scope_key="gateway", episode_id="1",
                       started_ns=1, faults_active=["redis-outage"]),
        Availability(**ids, ts_ns=1, availability_pct=80.0, episodes=1, mttr_s=3.0,
                     observed_s=9.0),
    ]  # fmt: skip


async def test_clearing_an_experiment_leaves_nothing_of_it_and_others_intact(
    stack: EmbeddedStack,
) -> None:
    old, other = f"store-{uuid.uuid4().hex[:8]}", f"store-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(stack.redis_url)
    try:
        for exp in (old, other):
            await write_results(redis, exp, _results(exp), {"accepted": 7, "buffered": 0})
        await clear_results(redis, old)
        assert await read_results(redis, old) == []
        assert await redis.keys(f"{prefix(old)}*") == []
        assert len(await read_results(redis, other)) == 2
        assert await redis.hget(f"{prefix(other)}:stats", "accepted") == b"7"
        await clear_results(redis, old)  # nothing there: still fine
    finally:
        await clear_results(redis, other)
        await redis.aclose()
