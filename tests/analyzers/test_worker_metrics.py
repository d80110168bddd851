"""An analyzer worker's metrics endpoint: every undecodable record, events and spans alike, is
counted in ``aftershock_analyzer_undecodable_records_total``; the page passes ``promtool check
metrics`` (where installed)."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from tests.analyzers.test_spans_cli import three_service_trace
from tests.analyzers.test_spans_json import otlp_json
from tests.analyzers.test_worker import Worker, worker_env, worker_topics
from tests.gameday.test_continuous import _free_port
from tests.promtool import check_metrics

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.processes import Processes

UNDECODABLE = re.compile(r"^aftershock_analyzer_undecodable_records_total (\S+)$", re.M)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


@pytest.mark.timeout(180)
async def test_undecodable_events_and_spans_are_counted(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    tag, topics = await worker_topics(stack)
    port = _free_port()
    env = worker_env(stack, topics, tmp_path / "state")
    log = tmp_path / "worker.log"
    worker = Worker(procs, env, f"analyzers-{tag}", log, ["--metrics-port", str(port)])
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        deadline = time.monotonic() + 90
        while not UNDECODABLE.search(await asyncio.to_thread(_scrape, port)):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.5)
        request = encode_spans(three_service_trace())
        # two good span records (protobuf and OTLP/JSON), two bad ones, one bad event record
        await producer.send_and_wait(topics["spans"], request.SerializeToString())
        await producer.send_and_wait(topics["spans"], otlp_json(MessageToDict(request)))
        await producer.send_and_wait(topics["spans"], b"\xff\x00not protobuf")
        await producer.send_and_wait(topics["spans"], b'{"resourceSpans": 3}')
        await producer.send_and_wait(
            topics["events"], b"\x00garbage", key=f"exp-{tag}/gateway/acme".encode()
        )
        text = ""
        while time.monotonic() < deadline:
            text = await asyncio.to_thread(_scrape, port)
            m = UNDECODABLE.search(text)
            if m and float(m.group(1)) >= 3:
                break
            await asyncio.sleep(0.5)
        m = UNDECODABLE.search(text)
        assert m, text
        assert float(m.group(1)) == 3.0, log.read_text(errors="replace")[-3000:]
        check_metrics(procs, text)
    finally:
        await producer.stop()
        worker.kill()
