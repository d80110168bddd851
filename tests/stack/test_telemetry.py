"""Tracing set-up by the standard OTEL_* variables, trace viewer links, and the active-fault
table that marks spans with the faults they ran under (followed through a real Redis)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from redis.asyncio import Redis

from spine import __version__
from spine.activefaults import (
    FAULT_IDS_ATTRIBUTE,
    ActiveFaults,
    FaultMark,
    announce,
    faults_key,
    follow,
    parse_mark,
)
from spine.settings import Settings
from spine.telemetry import configure_tracing, otlp_endpoint, service_resource, trace_link

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack

OTEL_VARS = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def test_resource_names_service_and_version_and_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    attrs = service_resource("aftershock-run").attributes
    assert (attrs["service.name"], attrs["service.version"]) == ("aftershock-run", __version__)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-gameday")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,a=b")
    attrs = service_resource("aftershock-run").attributes
    assert attrs["service.name"] == "checkout-gameday"
    assert attrs["service.version"] == __version__
    assert attrs["deployment.environment.name"] == "staging"
    assert attrs["a"] == "b"


def test_otlp_endpoint_by_the_standard_variables() -> None:
    s = Settings()
    assert otlp_endpoint(s, {}) is None
    assert otlp_endpoint(s, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9999/custom",
    }
    assert otlp_endpoint(s, both) == "http://t:9999/custom"  # used as given
    ours = Settings(otel_endpoint="http://ours:4318")
    assert otlp_endpoint(ours, {}) == "http://ours:4318/v1/traces"
    assert otlp_endpoint(ours, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://std:1"}) == (
        "http://std:1/v1/traces"
    )
    assert otlp_endpoint(ours, {"OTEL_TRACES_EXPORTER": "none"}) is None


def test_file_is_written_whatever_else_and_none_means_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="no endpoint"):
        configure_tracing(Settings(otel_exporter="otlp"), "t", run_dir=tmp_path, set_global=False)
    provider, shutdown = configure_tracing(
        Settings(otel_exporter="none"), "t", run_dir=tmp_path, set_global=False
    )
    assert provider is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_tracing(Settings(), "t", run_dir=tmp_path, set_global=False)[0] is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    provider, shutdown = configure_tracing(Settings(), "svc", run_dir=tmp_path, set_global=False)
    assert provider is not None
    provider.get_tracer("t").start_span("one").end()
    shutdown()
    (line,) = (tmp_path / "spans.jsonl").read_text().splitlines()
    span = json.loads(line)
    assert span["name"] == "one"
    assert span["resource"]["attributes"]["service.name"] == "svc"


def test_trace_link_by_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    tid = "0af7651916cd43dd8448eb211c80319c"
    assert trace_link(tid, "http://j:16686/trace/{trace_id}") == f"http://j:16686/trace/{tid}"
    assert trace_link(tid, "https://x/{trace_id}?from={trace_id}") == f"https://x/{tid}?from={tid}"
    monkeypatch.delenv("AFTERSHOCK_TRACE_URL_TEMPLATE", raising=False)
    assert trace_link(tid) is None
    monkeypatch.setenv("AFTERSHOCK_TRACE_URL_TEMPLATE", "http://127.0.0.1:16686/trace/{trace_id}")
    assert trace_link(tid) == f"http://127.0.0.1:16686/trace/{tid}"
    for bad in ("", "0af765", tid.upper(), tid + "0", '"><script>', "../" * 11):
        assert trace_link(bad) is None


def test_a_template_without_the_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must contain '\{trace_id\}'"):
        Settings(trace_url_template="http://jaeger/trace/")


S = 1_000_000_000


def _spans_marked(faults: ActiveFaults, windows: list[tuple[int, int]]) -> list[dict[str, object]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for start, end in windows:
        span = tracer.start_span("s", start_time=start)
        faults.mark(span, start, end)
        span.end(end)
    return [
        {
            "ids": s.attributes.get(FAULT_IDS_ATTRIBUTE) if s.attributes else None,
            "links": [
                (format(link.context.span_id, "016x"), dict(link.attributes or {}))
                for link in s.links
            ],
        }
        for s in memory.get_finished_spans()
    ]


def test_spans_are_marked_with_exactly_the_faults_that_overlapped_them() -> None:
    faults = ActiveFaults()
    outage = FaultMark(
        fault_id="redis-outage", start_ns=10 * S, end_ns=20 * S,
        trace_id="a" * 32, span_id="1" * 16,
    )  # fmt: skip
    storm = FaultMark(fault_id="storm", start_ns=15 * S, trace_id="b" * 32, span_id="2" * 16)
    faults.update(outage)
    faults.update(storm)
    got = _spans_marked(
        faults,
        [
            (0, 10 * S),  # ends as the outage starts: not under it
            (9 * S, 11 * S),  # overlaps the outage's start
            (12 * S, 13 * S),  # inside the outage
            (14 * S, 16 * S),  # both
            (20 * S, 21 * S),  # starts as the outage ends: only the storm (still active)
            (0, 100 * S),  # a session across both
        ],
    )
    o = ("1" * 16, {"aftershock.fault.id": "redis-outage"})
    st_ = ("2" * 16, {"aftershock.fault.id": "storm"})
    assert got == [
        {"ids": None, "links": []},
        {"ids": ("redis-outage",), "links": [o]},
        {"ids": ("redis-outage",), "links": [o]},
        {"ids": ("redis-outage", "storm"), "links": [o, st_]},
        {"ids": ("storm",), "links": [st_]},
        {"ids": ("redis-outage", "storm"), "links": [o, st_]},
    ]
    # the storm ends: later spans are not under it, earlier ones still are
    faults.update(storm.model_copy(update={"end_ns": 30 * S}))
    assert [m.fault_id for m in faults.during(30 * S, 31 * S)] == []
    assert [m.fault_id for m in faults.during(29 * S, 31 * S)] == ["storm"]


def test_a_fault_without_a_span_is_named_but_not_linked() -> None:
    faults = ActiveFaults()
    faults.update(FaultMark(fault_id="down", start_ns=0))
    assert _spans_marked(faults, [(1, 2)]) == [{"ids": ("down",), "links": []}]


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_mark_takes_a_mark_or_nothing(raw: bytes | str) -> None:
    mark = parse_mark(raw)
    assert mark is None or isinstance(mark, FaultMark)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"fault_id": "", "start_ns": 1}',
        b'{"fault_id": "x", "start_ns": -1}',
        b'{"fault_id": "x", "start_ns": 1, "trace_id": "xyz"}',
        b'{"fault_id": "x", "start_ns": 1, "span_id": "A' + b"0" * 15 + b'"}',
        b'{"fault_id": "x", "start_ns": 1, "extra": 1}',
        b"[1]",
    ],
)
def test_bad_marks_are_ignored(raw: bytes) -> None:
    assert parse_mark(raw) is None


async def test_generators_follow_what_the_injector_announces(stack: EmbeddedStack) -> None:
    exp = f"follow-{id(stack)}-{asyncio.get_running_loop().time()}".replace(".", "-")
    redis = Redis.from_url(stack.redis_url)
    before = FaultMark(fault_id="early", start_ns=1 * S, end_ns=2 * S)
    faults = ActiveFaults()
    started = asyncio.Event()
    try:
        await announce(redis, exp, before)  # announced before anyone follows
        await redis.publish(faults_key(exp), b"not a mark")  # ignored, not fatal
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(follow(redis, exp, faults, started=started))
            await asyncio.wait_for(started.wait(), 30)
            assert faults.during(0, 3 * S) == [before]
            late = FaultMark(fault_id="late", start_ns=5 * S, trace_id="c" * 32, span_id="3" * 16)
            await announce(redis, exp, late)
            ended = late.model_copy(update={"end_ns": 6 * S})
            await announce(redis, exp, ended)
            async with asyncio.timeout(30):
                while faults.during(6 * S, 7 * S) or not faults.during(5 * S, 6 * S):
                    await asyncio.sleep(0.01)
            assert faults.during(0, 10 * S) == [before, ended]
            task.cancel()
        assert await redis.ttl(faults_key(exp)) > 0  # the hash does not outlive its use
    finally:
        await redis.delete(faults_key(exp))
        await redis.aclose()


def test_span_files_hold_the_sdk_form_compact(tmp_path: Path) -> None:
    from opentelemetry.trace import Link, StatusCode

    from aftershock.gameday.traces import read_spans
    from spine.telemetry import JsonlSpanExporter, span_record

    path = tmp_path / "spans.jsonl"
    provider = TracerProvider(resource=service_resource("svc"))
    provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path)))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("session", attributes={"aftershock.tenant": "acme"}) as root:
        link = Link(root.get_span_context(), {"why": "fault"})
        child = tracer.start_span("round_trip", links=[link], attributes={"aftershock.seq": 3})
        child.add_event("retry", {"n": 1})
        child.set_status(StatusCode.ERROR, "timed out")
        child.end()
    provider.shutdown()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    # what the SDK writes, less what says nothing: the same fields with the same values
    for raw, span in zip((first, second), (child, root), strict=True):
        sdk = json.loads(span.to_json())  # type: ignore[attr-defined]
        for ctx in [sdk["context"], *(lk["context"] for lk in sdk["links"])]:
            assert ctx.pop("trace_state") == "[]"  # an empty trace state is left out
        assert raw == span_record(span) | ({"resource": raw["resource"]} if raw is first else {})
        resource = sdk.pop("resource")
        assert resource["attributes"]["service.name"] == "svc"
        if raw is first:
            assert raw["resource"] == {"attributes": resource["attributes"]}
        for key, value in raw.items():
            if key != "resource":
                assert sdk[key] == value, key
        left_out = {k: sdk[k] for k in set(sdk) - set(raw)}
        assert left_out in ({"events": [], "links": [], "status": {"status_code": "UNSET"}},
                            {})  # fmt: skip
    assert first["resource"]["attributes"]["service.name"] == "svc"  # once, on the first span
    assert "resource" not in second
    assert first["status"] == {"status_code": "ERROR", "description": "timed out"}
    assert first["links"][0]["attributes"] == {"why": "fault"}
    assert not {"status", "events", "links"} & set(second)
    spans = {s.name: s for s in read_spans(path)}
    assert spans["round_trip"].failed
    assert spans["round_trip"].description == "timed out"
    assert spans["round_trip"].parent_id == spans["session"].span_id
    assert spans["session"].attributes == {"aftershock.tenant": "acme"}
