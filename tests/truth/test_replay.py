"""Replay with no flags reproduces the live results bit for bit: the run's analysis
configuration is in its log, and every producer of a process stamps from one clock origin."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

from aftershock.gameday.analysis import LiveAnalysis
from analyzers.core import AnalyzerConfig
from analyzers.replay import replay_kafka
from spine.eventlog.publisher import Publisher
from spine.eventlog.sink import Fanout
from spine.store import read_results
from tests.analyzers.build import one
from tests.analyzers.test_worker import Worker, comparable, worker_env, worker_topics
from tests.truth.scenario import run_scenario

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.processes import Processes

pytestmark = pytest.mark.timeout(240)


async def test_replay_without_flags_equals_live_bit_for_bit(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    topic = f"test.events.{os.urandom(4).hex()}"
    await stack.create_topics([topic], partitions=3)
    exp = f"truth-replay-{os.urandom(3).hex()}"
    # Live analysis as `aftershock run` does it, given the configuration directly.
    live = LiveAnalysis(exp, AnalyzerConfig(), interval_s=0.05)
    async with Publisher(stack.kafka_bootstrap, topic, state_dir=tmp_path) as pub:
        sink = Fanout(pub, live)
        async with asyncio.TaskGroup() as tg:
            stepper = tg.create_task(live.run())
            config = await run_scenario(exp, tmp_path, sink)
            stepper.cancel()
    live_results = await live.drain(5.0)
    assert live.analyzer.config == config  # taken from the log, not from the constructor

    replayed = await replay_kafka(stack.kafka_bootstrap, topic, exp)
    assert [r.model_dump_json() for r in replayed] == [r.model_dump_json() for r in live_results]

    # The configuration mattered: the cascade's hop via the graph, the per-target SLO.
    c = one(replayed, "result.cascade", fault_id="cut")
    assert [(h.target, h.via) for h in c.hops] == [("store", None), ("front", "store")]
    verdict = one(replayed, "result.verdict", phase="")
    assert "front:mttr" in [check.name for check in verdict.checks]
    judged_otherwise = await replay_kafka(stack.kafka_bootstrap, topic, exp, AnalyzerConfig())
    assert judged_otherwise != replayed


@pytest.mark.slow
async def test_a_worker_judges_the_run_by_its_logged_configuration(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    """A Faust worker started with its defaults (nothing in Redis) stores what replay with no
    flags computes: the configuration came with the log."""
    tag, topics = await worker_topics(stack)
    exp = f"truth-worker-{tag}"
    async with Publisher(stack.kafka_bootstrap, topics["events"], state_dir=tmp_path) as pub:
        await run_scenario(exp, tmp_path, Fanout(pub))
    replayed = await replay_kafka(stack.kafka_bootstrap, topics["events"], exp)
    assert [(h.target, h.via) for h in one(replayed, "result.cascade", fault_id="cut").hops] == [
        ("store", None),
        ("front", "store"),
    ]
    env = worker_env(stack, topics, tmp_path / "state")
    log = tmp_path / "worker.log"
    redis = Redis.from_url(stack.redis_url)
    worker = Worker(procs, env, f"analyzers-{tag}", log)
    try:
        expected = comparable(replayed)
        got: list[Any] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and got != expected:
            await asyncio.sleep(0.5)
            got = comparable(await read_results(redis, exp))
        assert got == expected, log.read_text(errors="replace")[-3000:]
    finally:
        worker.kill(signal.SIGTERM)
        await redis.aclose()
