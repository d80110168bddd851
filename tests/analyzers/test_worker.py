"""A real analyzer worker (Faust, a subprocess) on the embedded broker: live equals replay,
and a worker killed mid-run resumes from its changelog without counting anything twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from analyzers.core import AnalyzerConfig
from analyzers.replay import analyze_batches, replay_kafka
from schemas.events import ExperimentEnded
from spine.eventlog import codec
from spine.store import prefix, read_results
from tests.analyzers.build import T0
from tests.analyzers.test_ordering_replay import scenario

if TYPE_CHECKING:
    from pathlib import Path

    from schemas.events import Event
    from spine.stack import EmbeddedStack
    from tests.processes import Processes


def comparable(results: list[Any]) -> list[dict[str, Any]]:
    """Results minus ``ts_ns`` (a stored result keeps the time it last changed)."""
    rows = [r.model_dump(exclude={"ts_ns"}) for r in results]
    return sorted(rows, key=lambda d: (d["kind"], d["event_id"]))


def events_for(exp: str) -> list[Event]:
    evs = [e.model_copy(update={"experiment_id": exp}) for e in scenario()]
    end = ExperimentEnded(
        experiment_id=exp,
        run_id="run-1",
        generator_id="injector",
        ts_ns=T0 + 46 * 10**9,
        status="completed",
    )
    return [*evs, end]


async def produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    """As publishers do: small batches (here ~0.2 s of the scenario) per partition key, so
    events of different keys sharing a partition are out of order by less than the
    allowed lateness."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(0, len(events), 10):
            groups: dict[str, list[Event]] = {}
            for e in events[i : i + 10]:
                groups.setdefault(codec.partition_key(e), []).append(e)
            for key, evs in groups.items():
                env = codec.encode_envelope(key, evs)
                await producer.send(topic, env.value, key=env.key, headers=list(env.headers))
        await producer.flush()
    finally:
        await producer.stop()


async def worker_topics(stack: EmbeddedStack) -> tuple[str, dict[str, str]]:
    """A fresh tag and a worker's own events, results and spans topics, created."""
    tag = uuid.uuid4().hex[:8]
    topics = {"events": f"ev-{tag}", "results": f"res-{tag}", "spans": f"sp-{tag}"}
    await stack.create_topics(list(topics.values()))
    return tag, topics


def worker_env(
    stack: EmbeddedStack, topics: dict[str, str], state_dir: Path, redis_url: str | None = None
) -> dict[str, str]:
    """The environment of an ``aftershock analyze`` worker on ``topics``."""
    return {
        **os.environ,
        "AFTERSHOCK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "AFTERSHOCK_REDIS_URL": redis_url or stack.redis_url,
        "AFTERSHOCK_TOPIC_EVENTS": topics["events"],
        "AFTERSHOCK_TOPIC_RESULTS": topics["results"],
        "AFTERSHOCK_TOPIC_SPANS": topics["spans"],
        "AFTERSHOCK_STATE_DIR": str(state_dir),
    }


class Worker:
    def __init__(
        self,
        procs: Processes,
        env: dict[str, str],
        app_id: str,
        log: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.log = log
        self._fh = log.open("ab")
        self.proc = procs.popen(
            [
                sys.executable,
                "-m",
                "aftershock.cli.main",
                "analyze",
                "--app-id",
                app_id,
                "--checkpoint-interval-s",
                "0.5",
                *(extra or []),
            ],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()


async def wait_for(check: Any, timeout_s: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"timed out waiting for {what}; worker log:\n{tail}")


@pytest.mark.slow
async def test_worker_live_equals_replay_and_resumes_after_a_crash(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    tag, topics = await worker_topics(stack)
    exp = f"exp-{tag}"
    env = worker_env(stack, topics, tmp_path / "state")
    events = events_for(exp)
    half = len(events) // 2
    expected = comparable(analyze_batches(exp, iter([events])))
    redis = Redis.from_url(stack.redis_url)
    log = tmp_path / "worker.log"
    app_id = f"analyzers-{tag}"

    async def accepted() -> int:
        raw = await redis.hget(f"{prefix(exp)}:stats", "accepted")
        return int(raw or 0)

    worker = Worker(procs, env, app_id, log)
    try:
        await produce(stack.kafka_bootstrap, topics["events"], events[:half])
        await wait_for(lambda: _ge(accepted, half), 60, "the first half to be analyzed", log)
        await asyncio.sleep(1.5)  # a checkpoint or two
    finally:
        worker.kill(signal.SIGKILL)  # a crash: no clean shutdown, no final commit
    # The broker hands a crashed member's partitions on once its session has expired.
    await asyncio.sleep(11)
    await produce(stack.kafka_bootstrap, topics["events"], events[half:])
    worker = Worker(procs, env, app_id, log)
    try:
        deadline = time.monotonic() + 90
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            got = comparable(await read_results(redis, exp))
            if got == expected:
                break
            await asyncio.sleep(0.5)
        if got != expected:
            stats = await redis.hgetall(f"{prefix(exp)}:stats")
            missing = [e for e in expected if e not in got]
            extra = [g for g in got if g not in expected]
            pytest.fail(
                f"live results differ from replay; stats {stats}\nmissing {missing[:3]}\n"
                f"extra {extra[:3]}\nlog: {log.read_text(errors='replace')[-2000:]}"
            )
        stats = await redis.hgetall(f"{prefix(exp)}:stats")
        assert int(stats[b"accepted"]) == len(events)
        assert int(stats[b"duplicates"]) == 0
        # The log itself replays to the same results.
        replayed = await replay_kafka(
            stack.kafka_bootstrap, topics["events"], exp, AnalyzerConfig()
        )
        assert comparable(replayed) == expected
    finally:
        worker.kill(signal.SIGTERM)
        await redis.aclose()


async def _ge(fn: Any, n: int) -> bool:
    return bool(await fn() >= n)
