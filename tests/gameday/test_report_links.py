"""Trace ids in the report link to the trace viewer set by ``AFTERSHOCK_TRACE_URL_TEMPLATE``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aftershock.report.html import render_html
from aftershock.report.model import RunData, RunMeta
from aftershock.report.text import render_markdown
from schemas.results import IsolationGroup, IsolationViolation

if TYPE_CHECKING:
    import pytest

VICTIM = "0af7651916cd43dd8448eb211c80319c"
ORIGIN = "4bf92f3577b34da6a3ce929d0e0e4736"


def _data() -> RunData:
    v = IsolationViolation(
        experiment_id="e", run_id="r", generator_id="analyzer", ts_ns=1,
        victim_tenant="acme", victim_session="s1", victim_trace_id=VICTIM,
        origin_tenant="globex", origin_session="s2", origin_trace_id=ORIGIN,
        seen_ns=1_800_000_000_000_000_000, source_event_id="ev1",
    )  # fmt: skip
    g = IsolationGroup(
        experiment_id="e", run_id="r", generator_id="analyzer", ts_ns=1,
        group_id="tenant/chat/globex>acme/-/-", victim_tenant="acme", origin_tenant="globex",
        count=1, first_ns=v.seen_ns, last_ns=v.seen_ns, example_trace_ids=[VICTIM],
        example_sessions=["s1"], examples_kept=1,
    )  # fmt: skip
    return RunData.of(RunMeta(experiment_id="e", run_id="r"), [v, g])


def test_trace_ids_link_to_the_viewer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSHOCK_TRACE_URL_TEMPLATE", "http://127.0.0.1:16686/trace/{trace_id}")
    html = render_html(_data())
    # violations are grouped; each group shows example traces of the sessions that got them
    assert f'<a href="http://127.0.0.1:16686/trace/{VICTIM}"><code>{VICTIM}</code></a>' in html
    md = render_markdown(_data())
    assert f"[`{VICTIM}`](http://127.0.0.1:16686/trace/{VICTIM})" in md


def test_without_a_template_ids_are_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFTERSHOCK_TRACE_URL_TEMPLATE", raising=False)
    html = render_html(_data())
    assert f"<td><code>{VICTIM}</code></td>" in html
    assert "16686" not in html
    assert f"| `{VICTIM}` |" in render_markdown(_data())
