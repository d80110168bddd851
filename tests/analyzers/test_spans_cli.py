"""Trace edges from OTLP spans (and the Kafka span exporter), and the replay/export CLI."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from aftershock.cli.main import app
from analyzers.report import render
from analyzers.spans import KafkaSpanExporter, SpanGraphBuilder, decode_spans
from tests.analyzers.test_ordering_replay import BASE, results_of

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

    from spine.stack import EmbeddedStack


def three_service_trace() -> list[ReadableSpan]:
    """gateway → message → redis, each service with its own tracer provider."""
    memory = InMemorySpanExporter()
    providers = {}
    for name in ("gateway", "message", "redis"):
        p = TracerProvider(resource=Resource.create({"service.name": name}))
        p.add_span_processor(SimpleSpanProcessor(memory))
        providers[name] = p
    gw = providers["gateway"].get_tracer("t")
    msg = providers["message"].get_tracer("t")
    rds = providers["redis"].get_tracer("t")
    with gw.start_as_current_span("ws"), msg.start_as_current_span("publish"):
        with rds.start_as_current_span("PUBLISH"):
            pass
        with msg.start_as_current_span("local"):  # same service: no edge
            pass
    return list(memory.get_finished_spans())


def test_span_parent_child_across_services_gives_caller_callee_edges() -> None:
    spans = decode_spans(encode_spans(three_service_trace()).SerializeToString())
    assert {s.service for s in spans} == {"gateway", "message", "redis"}
    builder = SpanGraphBuilder()
    # children arrive before their parents: edges still come out once the parent is seen
    edges = builder.add(spans)
    assert sorted(edges) == [("gateway", "message"), ("message", "redis")]
    assert builder.add(spans) == []


def test_garbage_is_not_taken_for_spans() -> None:
    with pytest.raises(ValueError, match="not an OTLP ExportTraceServiceRequest"):
        decode_spans(b"\xff\x00not protobuf")
    assert decode_spans(b"") == []


async def test_kafka_span_exporter_publishes_otlp_records(stack: EmbeddedStack) -> None:
    topic = f"spans-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic], partitions=1)
    exporter = KafkaSpanExporter(stack.kafka_bootstrap, topic)
    try:
        result = await asyncio.to_thread(exporter.export, three_service_trace())
        assert result is SpanExportResult.SUCCESS
    finally:
        await asyncio.to_thread(exporter.shutdown)
    assert exporter.export(three_service_trace()) is SpanExportResult.FAILURE
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=5000)
        records = batch.get(tp, [])
    finally:
        await consumer.stop()
    assert len(records) == 1
    assert records[0].value is not None
    edges = SpanGraphBuilder().add(decode_spans(records[0].value))
    assert sorted(edges) == [("gateway", "message"), ("message", "redis")]


def test_replay_from_an_export_file_prints_the_same_as_live(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in BASE))
    out = CliRunner().invoke(app, ["replay", "exp-1", "--from-file", str(path)])
    assert out.exit_code == 0, out.output
    from schemas.results import RESULT_TYPES

    by_kind = {t.model_fields["kind"].default: t for t in RESULT_TYPES}
    expected = render([by_kind[r["kind"]].model_validate(r) for r in results_of(BASE)])
    assert out.stdout == expected


def test_replay_names_the_bad_line_of_an_export_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [e.model_dump_json() for e in BASE[:3]]
    lines.insert(2, '{"kind": "session.send", "experiment_id": "exp-1"}')
    path.write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["replay", "exp-1", "--from-file", str(path)])
    assert out.exit_code == 2
    assert f"{path}:3:" in out.stderr


def test_a_bad_config_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("health: {fail_ratio: 3}\n")
    path = tmp_path / "exp.jsonl"
    path.write_text(BASE[0].model_dump_json() + "\n")
    out = CliRunner().invoke(
        app, ["replay", "exp-1", "--from-file", str(path), "--config", str(cfg)]
    )
    assert out.exit_code == 2
    assert "health.fail_ratio" in out.stderr
