"""A game day's spans as a real OTLP/HTTP receiver decodes them: span kinds, semantic-convention
attributes, the fault on the spans that ran under it (ids and links), error status on failed
sessions, the resource; and ``aftershock traces`` and ``aftershock run --json`` on the same run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spine.eventlog.runlog import EVENTS_DIR, iter_raw
from tests.gameday.otlp_receiver import OtlpReceiver, attrs

if TYPE_CHECKING:
    from spine.stack import EmbeddedStack
    from tests.processes import Processes

pytestmark = pytest.mark.timeout(180)

SHORT = Path(__file__).parent / "short-gameday.yaml"


def _short_experiment(tmp_path: Path) -> Path:
    """The short game day cut down: 8 s of load, one Redis outage from 2 s to 5 s, answers
    given up after 1.5 s (so sessions fail while Redis is down)."""
    text = SHORT.read_text()
    text = text.replace("duration_s: 22", "duration_s: 8")
    text = text.replace("ramp: {shape: linear, ramp_s: 2}", "ramp: {shape: linear, ramp_s: 1}")
    text = text.replace(
        "size: {dist: uniform, min_bytes: 64, max_bytes: 256}",
        "size: {dist: uniform, min_bytes: 64, max_bytes: 256}\n            timeout_ms: 1500",
    )
    faults = text.index("    faults:")
    slos = text.index("    slos:")
    text = (
        text[:faults]
        + """    faults:
      - id: redis-outage
        description: Redis unreachable; cascades to the message service and the gateway
        at: 2s
        duration: 3s
        proxy: redis
        down: true

"""
        + text[slos:]
    )
    path = tmp_path / "otel-gameday.yaml"
    path.write_text(text)
    return path


def _ns_hex(b: bytes) -> str:
    return b.hex()


def test_spans_by_the_conventions_with_faults_and_failures(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    runs = tmp_path / "runs"
    with OtlpReceiver() as receiver:
        env = {
            **os.environ,
            "AFTERSHOCK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "AFTERSHOCK_REDIS_URL": stack.redis_url,
            "AFTERSHOCK_STATE_DIR": str(tmp_path / "state"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "gameday-under-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
        }
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        env.pop("OTEL_TRACES_EXPORTER", None)
        proc = procs.run(
            [
                sys.executable, "-m", "aftershock.cli.main",
                "run", str(_short_experiment(tmp_path)), "--runs-dir", str(runs),
                "--trace-every", "1", "--json",
            ],
            env=env, text=True, timeout=150,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        spans = receiver.spans()
        assert receiver.bad == []

    # --json: one document on stdout, console lines on stderr
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode
    assert doc["outcome"] == {0: "PASS", 1: "FAIL"}[proc.returncode]
    assert "verdict " in proc.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    # console lines are not wrapped in a pipe: the run's first line names its directory whole
    assert any(line.endswith(f"; run directory {run_dir}") for line in proc.stderr.splitlines())
    results = json.loads((run_dir / "results.json").read_text())
    (verdict,) = [r for r in results["results"] if r["kind"] == "result.verdict" and not r["phase"]]
    assert doc["verdict"] == verdict
    assert doc["run_id"] == results["meta"]["run_id"] == run_dir.name
    assert doc["status"] == results["meta"]["status"]

    def same(a: list[dict[str, object]], b: list[dict[str, object]]) -> bool:
        return sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))

    for name, kind in (("availability", "result.availability"), ("latency", "result.latency")):
        expected = [r for r in results["results"] if r["kind"] == kind]
        assert expected
        assert same(doc["figures"][name], expected), name

    ours = [(res, s) for res, s in spans if res.get("service.name") == "gameday-under-test"]
    assert ours, "no spans of the run reached the receiver"
    for res, _ in ours:
        assert res["service.version"] == "0.1.0"
        assert res["deployment.environment.name"] == "ci"
    by_name: dict[str, list[Span]] = {}
    for _, s in ours:
        by_name.setdefault(s.name, []).append(s)

    (fault,) = by_name["fault redis-outage"]
    fault_ctx = (fault.trace_id, fault.span_id)
    # The fault's window, as the run's events have it (and the analyzers and reports use):
    # from the proxy being disabled to it being enabled again.
    events = list(iter_raw(run_dir / EVENTS_DIR))
    ours_ = [e for e in events if e.get("source") == "injector"]
    (fault_start,) = [e["ts_ns"] for e in ours_ if e["kind"] == "fault.proxy_disabled"]
    (fault_end,) = [e["ts_ns"] for e in ours_ if e["kind"] == "fault.proxy_enabled"]
    assert fault.start_time_unix_nano < fault_start  # the span covers applying it
    assert fault.end_time_unix_nano == fault_end

    sessions = by_name["session"]
    connects = by_name["connect"]
    trips = by_name["round_trip"]
    assert all(s.kind == Span.SPAN_KIND_CLIENT for s in connects + trips)
    for s in connects:
        a = attrs(s.attributes)
        assert a["network.protocol.name"] == "websocket"
        assert a["http.request.method"] == "GET"
        assert a["server.address"] == "127.0.0.1"
        port = a["server.port"]  # the gateway's proxy listener (the run picks free ports)
        assert isinstance(port, int)
        assert port > 0
        assert a["url.full"] == f"ws://127.0.0.1:{port}/ws"
    for s in trips:
        a = attrs(s.attributes)
        assert a["messaging.destination.name"] == "general"
        assert a["messaging.operation.type"] == "send"
        assert a["network.protocol.name"] == "websocket"

    def under_fault(s: Span) -> bool:
        return s.start_time_unix_nano < fault_end and s.end_time_unix_nano > fault_start

    def marked(s: Span) -> bool:
        ids = attrs(s.attributes).get("aftershock.fault.ids")
        linked = [(ln.trace_id, ln.span_id) for ln in s.links]
        if ids is None:
            assert linked == []
            return False
        assert ids == ["redis-outage"]
        assert linked == [fault_ctx]
        (link,) = s.links
        assert attrs(link.attributes) == {"aftershock.fault.id": "redis-outage"}
        return True

    # Spans that ran while the outage was in force name it and link to its span; spans that
    # ran wholly before or after it do not. Generators hear of a fault's start and end through
    # Redis a few milliseconds late, so only spans near either edge may differ.
    edge_ns = 500_000_000

    def near_an_edge(s: Span) -> bool:
        return (
            s.end_time_unix_nano < fault_start + edge_ns
            or s.start_time_unix_nano > fault_end - edge_ns
        )

    for s in sessions + connects + trips:
        if marked(s):
            assert under_fault(s) or near_an_edge(s), s.name
        elif under_fault(s):
            assert near_an_edge(s), s.name
    # well inside the window (sessions lose their connections to the outage and retry), every
    # span is marked
    inside = [
        s
        for s in connects + trips
        if s.start_time_unix_nano > fault_start + edge_ns
        and s.end_time_unix_nano < fault_end - edge_ns
    ]
    assert inside
    assert all(marked(s) for s in inside)
    sessions_marked = [s for s in sessions if marked(s)]
    assert sessions_marked, "no session ran under the fault"
    trips_marked = [s for s in trips if marked(s)]
    assert trips_marked

    # round trips given up during the outage are errors; so are the sessions that had errors.
    # Whether the outage caught a trip in flight (or the gateway closed every session between
    # two sends) depends on timing: the run's own events say whether any was given up.
    failed_trips = [s for s in trips if s.status.code == Status.STATUS_CODE_ERROR]
    given_up = [e for e in events if e["kind"] == "session.error" and e.get("seq") is not None]
    assert bool(failed_trips) == bool(given_up), (len(failed_trips), len(given_up))
    assert all(attrs(s.attributes)["error.type"] for s in failed_trips)
    failed_traces = {s.trace_id for s in failed_trips}
    for s in sessions:
        errors = attrs(s.attributes)["aftershock.errors"]
        if s.trace_id in failed_traces:
            assert errors > 0
        if errors > 0:
            assert s.status.code == Status.STATUS_CODE_ERROR
            assert s.status.message == f"{errors} errors"
        else:
            assert s.status.code != Status.STATUS_CODE_ERROR

    # the same run, read back from its span file
    file_spans = [json.loads(line) for line in (run_dir / "spans.jsonl").read_text().splitlines()]
    assert {s["context"]["span_id"][2:] for s in file_spans if s["name"] == "session"} == {
        _ns_hex(s.span_id) for s in sessions
    }
    out = procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "traces", str(run_dir), "--failed"],
        env=env, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "FAILED" in out.stdout.splitlines()[0]
    assert "faults: redis-outage" in out.stdout
    nonexist = procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "traces", "nonexist"],
        env=env, text=True, timeout=60,
    )  # fmt: skip
    assert nonexist.returncode == 2
    assert "no such run: nonexist" in nonexist.stderr
