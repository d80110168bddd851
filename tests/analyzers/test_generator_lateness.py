"""A generator that fell behind is not the system failing: ``session.skipped`` events and the
``late_ms`` of sends change no figure of the analysis (load, errors, availability, verdict),
whether the events come as models (replay) or through the worker's fast decoding path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers.core import Analyzer, AnalyzerConfig, SloSpec
from analyzers.decode import decode_record, fast_decode
from schemas.events import SendSkipped
from spine.eventlog import codec
from tests.analyzers.build import EXP, connected, fail, ok, send

if TYPE_CHECKING:
    from analyzers.core.events import Fed
    from schemas.events import Event


def _run(*, behind: bool) -> list[Event]:
    events: list[Event] = [connected(0), connected(9_999)]
    for i in range(100):
        late = 250.0 if behind and 40 <= i < 60 else None
        events.append(send(i * 100, i + 1).model_copy(update={"late_ms": late}))
        events.append(ok(i * 100 + 5, latency_ms=5.0))
    events.append(fail(5_000, cls="Timeout"))
    if behind:
        s = send(4_050, 1)
        fields = s.model_dump(exclude={"kind", "seq", "bytes", "channel", "expect", "late_ms"})
        for t in (4_050, 4_550, 5_050):
            fields["ts_ns"] = s.ts_ns + (t - 4_050) * 1_000_000
            events.append(SendSkipped(**fields, count=7, late_ms=1_200.0, reason="behind"))
            events.append(SendSkipped(**fields, count=1, late_ms=30.0, reason="busy"))
    return sorted(events, key=lambda e: e.ts_ns)


def _fold(events: list[Fed]) -> list[dict[str, object]]:
    a = Analyzer(EXP, AnalyzerConfig(slos=[SloSpec(availability_min_pct=99.0)]))
    a.ingest(events)
    a.finish()
    out = []
    for r in a.results():
        d = r.model_dump()
        if d["kind"] == "result.live":
            del d["events"]  # how many events were folded: the skipped ones are events too
        out.append(d)
    return out


def test_skipped_and_late_sends_change_no_figure() -> None:
    assert _fold(list(_run(behind=True))) == _fold(list(_run(behind=False)))


def test_the_worker_decodes_them_on_its_fast_path_to_the_same_figures() -> None:
    events = _run(behind=True)
    value = codec.encode_batch(events)
    headers = dict(codec.headers_for(len(events)))
    assert fast_decode(value, headers) is not None
    assert _fold(list(decode_record(value, headers))) == _fold(list(_run(behind=False)))
