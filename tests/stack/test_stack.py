"""The embedded stack against its real servers: health, topics, clean stop, stale cleanup."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from spine import stackstate
from spine.errors import BinaryNotFoundError, PortInUseError, StackAlreadyRunningError
from spine.settings import Settings
from spine.stack import EmbeddedStack

if TYPE_CHECKING:
    from pathlib import Path

    from tests.processes import Processes


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", kafka_bootstrap=None, redis_url=None, **kw)  # type: ignore[arg-type]


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


async def test_session_stack_serves_kafka_and_redis(stack: EmbeddedStack) -> None:
    redis = Redis.from_url(stack.redis_url)
    try:
        assert await redis.set("aftershock:test:k", "v")
        assert await redis.get("aftershock:test:k") == b"v"
    finally:
        await redis.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = {
            t["topic"]: t for t in await admin.describe_topics(list(stack.settings.topics))
        }
    finally:
        await admin.close()
    for topic in stack.settings.topics:
        assert len(described[topic]["partitions"]) == stack.settings.partitions


async def test_up_down_leaves_no_process_and_drop_topics_empties(tmp_path: Path) -> None:
    settings = _settings(tmp_path, partitions=2)
    async with EmbeddedStack(settings) as st:
        pids = [p.pid for p in st.processes]
        assert len(pids) == 2
        assert _alive(pids) == pids
        assert st.started_in_s is not None
        assert st.started_in_s > 0
        assert list(stackstate.read_records(settings.state_dir))
        producer = AIOKafkaProducer(bootstrap_servers=st.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_events, b"x", partition=0)
        finally:
            await producer.stop()
        assert await _end_offset(st.kafka_bootstrap, settings.topic_events) == 1
        await st.drop_topics([settings.topic_events])
        assert await _end_offset(st.kafka_bootstrap, settings.topic_events) == 0
    assert _alive(pids) == []
    assert list(stackstate.read_records(settings.state_dir)) == []
    await st.stop()  # idempotent


async def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_configured_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}"):
            await EmbeddedStack(_settings(tmp_path, redis_port=port)).start()
    # The broker that did start was stopped again.
    assert all(
        rec is None
        or rec.processes == []
        or not any(stackstate.is_alive(p.pid, p.create_time) for p in rec.processes)
        for _, rec in stackstate.read_records(tmp_path / "state")
    )


async def test_a_configured_port_held_a_moment_longer_is_waited_for(tmp_path: Path) -> None:
    """Restarting a server on its port just after it stopped: the port may be held a moment
    longer (here by a socket released after 1 s); the start waits for it instead of failing."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    loop = asyncio.get_running_loop()
    loop.call_later(1.0, taken.close)
    t0 = loop.time()
    try:
        async with EmbeddedStack(_settings(tmp_path, redis_port=port)) as stack:
            assert stack.redis_url.endswith(f":{port}/0")
            assert loop.time() - t0 >= 0.9
    finally:
        taken.close()


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tansu"
    with pytest.raises(BinaryNotFoundError, match="no-such-tansu"):
        await EmbeddedStack(_settings(tmp_path, tansu_bin=missing)).start()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_servers_die_with_a_killed_owner_and_its_record_is_cleaned(
    tmp_path: Path, sig: signal.Signals, procs: Processes
) -> None:
    state = tmp_path / "state"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from spine.settings import Settings
        from spine.stack import EmbeddedStack
        async def main():
            st = EmbeddedStack(Settings(state_dir=Path({str(state)!r})))
            await st.start()
            print(",".join(str(p.pid) for p in st.processes), flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
    owner = procs.popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    assert owner.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(owner.stdout.readline), 120)
    orphans = [int(p) for p in line.strip().split(",")]
    assert len(orphans) == 2
    owner.send_signal(sig)
    owner.wait()
    async with asyncio.timeout(60):  # the kernel signals them when their parent dies
        while _alive(orphans):
            await asyncio.sleep(0.05)
    assert [rec for _, rec in stackstate.read_records(state)]  # the record the crash left
    async with EmbeddedStack(_settings(tmp_path)) as st:
        assert st.cleaned_stale == []  # nothing was left running
    assert [rec for _, rec in stackstate.read_records(state)] == []


async def test_second_detached_stack_is_refused_and_down_stops_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = EmbeddedStack(settings, detached=True)
    await first.start()
    pids = [p.pid for p in first.processes]
    first.detach()
    try:
        with pytest.raises(StackAlreadyRunningError, match="stack down"):
            await EmbeddedStack(settings, detached=True).start()
        assert _alive(pids) == pids
    finally:
        for path, rec in stackstate.read_records(settings.state_dir):
            assert rec is not None
            await stackstate.stop_record(settings.state_dir, path, rec)
    assert _alive(pids) == []
