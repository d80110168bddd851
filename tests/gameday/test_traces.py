"""``aftershock traces``: session trees from real SDK spans, with the faults active at each span."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from typer.testing import CliRunner

from aftershock.cli.main import app
from aftershock.gameday.traces import load_run, render_trace, select
from schemas.events import ProxyDisabled, ProxyEnabled, SessionError

if TYPE_CHECKING:
    from pathlib import Path

S = 1_000_000_000
T0 = 1_800_000_000 * S


def _write_run(run_dir: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    ids = {"experiment_id": "t", "run_id": "r", "generator_id": "g"}
    events = [
        ProxyDisabled(**ids, ts_ns=T0 + 2 * S, proxy="redis", fault_id="redis-outage"),
        ProxyEnabled(**ids, ts_ns=T0 + 6 * S, proxy="redis"),
    ]
    for tenant, fail in (("acme", False), ("globex", True)):
        root = tracer.start_span(
            "session",
            attributes={"aftershock.tenant": tenant, "aftershock.session": f"{tenant}-s1"},
            start_time=T0,
        )
        ctx = set_span_in_context(root)
        tracer.start_span("connect", context=ctx, start_time=T0 + S // 10).end(T0 + S // 5)
        rt = tracer.start_span("round_trip", context=ctx, start_time=T0 + 3 * S)
        if fail:
            rt.set_status(Status(StatusCode.ERROR, "timeout"))
            sc = rt.get_span_context()
            events.append(
                SessionError(
                    **ids,
                    ts_ns=T0 + 3 * S + 5,
                    tenant=tenant,
                    user="u",
                    session=f"{tenant}-s1",
                    target="gateway",
                    protocol="ws",
                    error_class="closed_1011",
                    message="upstream down",
                    trace_id=format(sc.trace_id, "032x"),
                    span_id=format(sc.span_id, "016x"),
                )
            )
        rt.end(T0 + 4 * S)
        root.end(T0 + 8 * S)
    (run_dir / "spans.jsonl").write_text(
        "".join(s.to_json(indent=None) + "\n" for s in exporter.get_finished_spans())
    )
    (run_dir / "events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))


def test_failed_session_tree_shows_the_active_fault(tmp_path: Path) -> None:
    _write_run(tmp_path)
    traces, windows, matched, total = load_run(tmp_path)
    assert [t.tenant for t in traces] == ["acme", "globex"]
    assert (matched, total) == (2, 2)
    failed = select(traces, failed=True)
    assert [t.session for t in failed] == ["globex-s1"]
    only, _, matched, total = load_run(tmp_path, failed=True, limit=1)
    assert [t.session for t in only] == ["globex-s1"]
    assert (matched, total) == (1, 2)
    text = render_trace(failed[0], windows)
    lines = text.splitlines()
    assert lines[0].endswith("FAILED")
    assert lines[1].startswith("session  +0.0 ms  8000.0 ms  ok")
    assert "├─ connect  +100.0 ms" in lines[2]
    assert "faults" not in lines[2]  # connect happened before the outage
    assert "└─ round_trip  +3000.0 ms  1000.0 ms  ERROR: timeout  faults: redis-outage" in text
    assert "· +3000.0 ms error closed_1011 (receive): upstream down" in text


def test_cli_filters_and_errors(tmp_path: Path) -> None:
    _write_run(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["traces", str(tmp_path), "--tenant", "acme"])
    assert out.exit_code == 0, out.output
    assert "tenant=acme" in out.output
    assert "globex" not in out.output
    none = runner.invoke(app, ["traces", str(tmp_path), "--session", "nobody"])
    assert none.exit_code == 1
    assert "no session trace matches" in none.output
    missing = runner.invoke(app, ["traces", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert f"no such run: {tmp_path / 'nope'}" in missing.output
    untraced = tmp_path / "untraced"
    untraced.mkdir()
    off = runner.invoke(app, ["traces", str(untraced)])
    assert off.exit_code == 2
    assert "has no spans.jsonl: tracing was off" in off.output
