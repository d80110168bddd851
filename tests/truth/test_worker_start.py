"""A worker started after earlier runs leaves their stored results as they are: it starts
reading the log where the stored results say analysis stopped, and never rewrites results
marked final, even when it does read their events."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from analyzers.core import Analyzer, AnalyzerConfig, HealthThresholds
from analyzers.replay import analyze_batches
from spine.eventlog import codec
from spine.store import Span, read_results, write_results, write_span
from tests.analyzers.build import T0
from tests.analyzers.test_worker import Worker, comparable, events_for, worker_env, worker_topics

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event
    from spine.stack import EmbeddedStack
    from tests.processes import Processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Earlier runs were judged with thresholds their logs do not record (an older release): a
# worker analysing them again with its defaults would find other figures.
EARLIER = AnalyzerConfig(health=HealthThresholds(min_failures=1000))


def shifted(events: list[Event], to_ns: int) -> list[Event]:
    shift = to_ns - T0
    return [e.model_copy(update={"ts_ns": e.ts_ns + shift}) for e in events]


async def produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    """As the runs' publishers did, when they did: each record stamped when its events were."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(0, len(events), 10):
            groups: dict[str, list[Event]] = {}
            for e in events[i : i + 10]:
                groups.setdefault(codec.partition_key(e), []).append(e)
            for key, evs in groups.items():
                env = codec.encode_envelope(key, evs)
                await producer.send(
                    topic,
                    env.value,
                    key=env.key,
                    headers=list(env.headers),
                    timestamp_ms=max(e.ts_ns for e in evs) // 1_000_000,
                )
        await producer.flush()
    finally:
        await producer.stop()


async def store_final(redis: Redis, exp: str, events: list[Event], topic: str) -> None:
    """As a finished in-process run published to ``topic`` leaves its results."""
    a = Analyzer(exp, EARLIER, config_from_log=False)
    a.ingest(events)
    a.finish()
    await write_results(redis, exp, a.results(), {"accepted": len(events)})
    assert a.first_ns is not None
    end = a.ended_ns or a.last_ns
    await write_span(redis, exp, Span(a.run_id or "-", a.first_ns, end, True, topic))


async def stored(redis: Redis, exp: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"aftershock:{exp}:results:*"):
        kind = await redis.type(key)
        out[key] = await (redis.hgetall(key) if kind == b"hash" else redis.dump(key))
    return out


async def test_a_new_worker_leaves_earlier_runs_results_unchanged(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    tag, topics = await worker_topics(stack)
    redis_url = stack.redis_url.rsplit("/", 1)[0] + "/7"  # a database of its own
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    old, recent, new = (f"{n}-{tag}" for n in ("old", "recent", "new"))
    now = time.time_ns()
    logs = {
        old: events_for(old),  # a run long ago
        recent: shifted(events_for(recent), now - 60 * 10**9),  # ended ~14 s ago
        new: shifted(events_for(new), now + 5 * 10**9),
    }
    for exp in (old, recent):
        await store_final(redis, exp, logs[exp], topics["events"])
        await produce(stack.kafka_bootstrap, topics["events"], logs[exp])
    before = {exp: await stored(redis, exp) for exp in (old, recent)}
    assert all(before.values())

    env = worker_env(stack, topics, tmp_path / "state", redis_url=redis_url)
    log = tmp_path / "worker.log"
    worker = Worker(procs, env, f"analyzers-{tag}", log)
    try:
        await produce(stack.kafka_bootstrap, topics["events"], logs[new])
        expected = comparable(analyze_batches(new, iter([logs[new]])))
        deadline = time.monotonic() + 120
        got: list[Any] = []
        while time.monotonic() < deadline and got != expected:
            await asyncio.sleep(0.5)
            got = comparable(await read_results(redis, new))
        assert got == expected, log.read_text(errors="replace")[-3000:]
        await asyncio.sleep(2.0)  # several publish intervals more
        for exp in (old, recent):
            assert await stored(redis, exp) == before[exp], exp
        text = log.read_text(errors="replace")
        # The old run's records come before where analysis stopped: never even read. The
        # recent run's last record is at that point: read, and its results left alone.
        assert f"experiment {old}" not in text
        assert f"experiment {recent}: stored results of run run-1 are final" in text
    finally:
        worker.kill(signal.SIGTERM)
        await redis.flushdb()
        await redis.aclose()
