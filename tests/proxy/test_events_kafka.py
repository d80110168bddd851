"""Fault events from the proxy reach the event log through the Kafka publisher, and the CLI
publishes them too."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

from injector.proxy import ProxyServer
from spine.eventlog.publisher import Publisher
from spine.eventlog.reader import EventReader
from tests.lossy_broker import RETAIN_NOTHING, LossyBroker, jsonl_ids, losses, stderr_until
from tests.proxy.helpers import Api

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.processes import Processes


async def _read(stack: EmbeddedStack, topic: str, n: int) -> list[str]:
    """The first ``n`` events of the topic (waiting for them), and whether more follow."""
    events = []
    async with (
        EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as reader,
        asyncio.timeout(60),
    ):
        while len(events) < n:
            events += await reader.read(max_events=n - len(events), idle_timeout_s=0.2)
        events += await reader.read(idle_timeout_s=1.0)  # none more
    return [e.kind for e in sorted(events, key=lambda e: e.ts_ns)]


async def test_embedded_server_publishes_fault_events(stack: EmbeddedStack, tmp_path: Path) -> None:
    topic = f"proxy-events-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic], partitions=1)
    async with Publisher(stack.kafka_bootstrap, topic, state_dir=tmp_path) as publisher:
        async with ProxyServer(sink=publisher) as server, Api(server) as api:
            await api.proxy("p", 1)
            await api.toxic("p", type="latency", name="f1", ttl_ms=100)
            async with asyncio.timeout(30):  # until the lease has expired
                while (await api.client.get("/proxies/p/toxics")).json():
                    await asyncio.sleep(0.02)
        await publisher.flush(10)
    kinds = await _read(stack, topic, 3)
    assert kinds == ["fault.proxy_created", "fault.toxic_added", "fault.toxic_removed"]


async def test_cli_publishes_to_kafka(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    topic = f"proxy-cli-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic], partitions=1)
    proc = await procs.exec(
        sys.executable, "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0",
        "--kafka-bootstrap", stack.kafka_bootstrap, "--topic", topic,
        stdout=subprocess.PIPE,
        env={**os.environ, "AFTERSHOCK_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("fault proxy API on http://127.0.0.1:"), line
        url = line.split()[-1]
        import httpx

        async with httpx.AsyncClient(base_url=url) as client:
            created = await client.post("/proxies", json={"name": "c", "upstream": "127.0.0.1:1"})
            assert created.status_code == 201
            assert (await client.delete("/proxies/c")).status_code == 204
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert await _read(stack, topic, 2) == ["fault.proxy_created", "fault.proxy_deleted"]


async def test_cli_exits_4_when_its_event_log_lost_events_for_good(
    tmp_path: Path, procs: Processes
) -> None:
    async with LossyBroker(tmp_path / "broker") as broker:
        topic = broker.settings.topic_events
        emitted = tmp_path / "events.jsonl"
        proc = await procs.exec(
            sys.executable, "-m", "aftershock.cli.main", "proxy", "serve", "--port", "0",
            "--kafka-bootstrap", broker.bootstrap, "--topic", topic, "--events", str(emitted),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "AFTERSHOCK_STATE_DIR": str(tmp_path / "cli"), **RETAIN_NOTHING},
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            url = line.split()[-1]
            import httpx

            async with httpx.AsyncClient(base_url=url) as client:
                for i in range(40):  # 80 events: several segments of the publisher's log
                    body = {"name": f"p{i}", "upstream": "127.0.0.1:1"}
                    assert (await client.post("/proxies", json=body)).status_code == 201
                    assert (await client.delete(f"/proxies/p{i}")).status_code == 204
            await broker.read(topic, at_least=80)
            await broker.restart()
            said = await stderr_until(proc.stderr, "lost for good")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
        said += (await proc.stderr.read()).decode()
        assert code == 4, said
        got = await broker.read(topic, at_least=1)
    (loss,) = losses(got)
    missing = jsonl_ids(emitted) - {e.event_id for e in got}
    assert loss.unrepaired == len(missing) > 0
    assert loss.experiment_id == "none"  # the proxy serves any experiment
    assert f"{loss.reason}; {loss.unrepaired} events are lost for good" in said
    assert f"error: the event log lost {loss.unrepaired} events for good" in said
