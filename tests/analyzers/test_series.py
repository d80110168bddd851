"""The time series and the dashboard's figures are folds of the analyzer core: the core's
failure rule, fault windows and clock-corrected event time, compared with the hand-written
scenario's ground truth."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.core import Analyzer
from schemas.events import Connected, Disconnect, Receive, Send, SessionError
from schemas.results import Availability, LiveFigures, LoadSummary, TimeSeries
from spine.sketch import LogHistogram
from tests.analyzers.live_scenario import CONFIG, EXP, T0, S, scenario

if TYPE_CHECKING:
    from schemas.events import Event
    from schemas.results import ResultEvent


def _sketch(values: list[int]) -> LogHistogram:
    h = LogHistogram()
    for v in values:
        h.add(float(v))
    return h


def _fold(
    events: list[Event], *, finish: bool = True
) -> tuple[TimeSeries, LiveFigures, list[ResultEvent]]:
    a = Analyzer(EXP, CONFIG)
    a.ingest(events)
    if finish:
        a.finish()
    results = a.results()
    series = next(r for r in results if isinstance(r, TimeSeries))
    live = next(r for r in results if isinstance(r, LiveFigures))
    return series, live, results


def test_buckets_count_failures_as_the_core_does() -> None:
    series, _, _ = _fold(scenario())
    assert series.origin_ns == scenario()[0].ts_ns
    rows = [(b.start_s, b.sent, b.received, b.errors, b.connects) for b in series.buckets]
    ok, failing = (10, 11, 1, 0), (10, 1, 11, 0)
    # connects of all three sessions land in second 0: globex-2's clock is corrected
    expected = [(0.0, 10, 11, 1, 3)]
    expected += [(float(s), *(failing if s in (6, 7) else ok)) for s in range(1, 9)]
    # the server's abnormal close of globex-2 at 9.5 s (corrected) is a failure
    expected += [(9.0, 10, 11, 2, 0)]
    assert rows == expected
    latency = {b.start_s: b.p99_ms for b in series.buckets}
    assert latency[6.0] is None  # a 503 has no latency
    # the quantiles are the latency summaries' sketch over the bucket's ten latencies
    assert latency[3.0] == _sketch(list(range(1, 11))).quantile(0.99)


def test_windows_are_the_cores_own() -> None:
    series, _, _ = _fold(scenario())
    assert [(w.fault_id, w.proxy, w.fault_type, w.start_s, w.end_s) for w in series.windows] == [
        ("redis-outage", "redis", "proxy_disabled", 1.0, None),
        # opened by fault.toxic_updated alone
        ("message-latency", "message", "latency", 2.0, 4.0),
    ]


def test_live_figures_at_the_end() -> None:
    _, live, results = _fold(scenario())
    assert live.at_s == pytest.approx(9.99)
    assert live.current_phase == "fault:redis-outage"
    assert live.active_faults == ["redis-outage"]
    assert live.sessions == 2
    # complete buckets 4..8: 35 receives, 25 failures, no connects
    assert live.throughput_per_s == pytest.approx(35 / 5)
    assert live.error_rate_pct == pytest.approx(100 * 25 / 60)
    assert live.p99_ms == _sketch(list(range(1, 11)) * 3).quantile(0.99)
    overall = next(r for r in results if isinstance(r, Availability) and r.scope == "overall")
    assert live.episodes == overall.episodes >= 1
    assert live.mttr_s == overall.mttr_s
    assert live.open_episodes == []
    assert live.isolation_violations == 0
    assert live.events == len(scenario())


def test_arrival_order_within_the_lateness_changes_nothing() -> None:
    events = scenario()
    rng = random.Random(7)
    shuffled = list(events)
    # swap neighbours: each event moves by far less than the allowed lateness
    for i in range(0, len(shuffled) - 1, 2):
        if rng.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    assert _fold(shuffled)[:2] == _fold(events)[:2]


def test_events_counts_every_event_folded_once_late_ones_included() -> None:
    # The scenario fed in two halves, the second half's first ten events arriving after
    # the watermark passed them (late: folded at once), plus a copy of five events: the
    # count is every distinct event, as the log holds them.
    events = scenario()
    half = len(events) // 2
    a = Analyzer(EXP, CONFIG)
    a.ingest(events[:half] + events[half + 10 :] + events[:5])
    a.tick()
    a.ingest(events[half : half + 10])
    a.finish()
    stats = a.stats()
    assert stats.late > 0
    assert stats.duplicates == 5
    live = next(r for r in a.results() if isinstance(r, LiveFigures))
    assert live.events == len(events) == stats.released + stats.late


def test_an_open_episode_shows_before_the_end() -> None:
    cut = [e for e in scenario(ended=False) if e.ts_ns < scenario()[0].ts_ns + 7_500_000_000]
    a = Analyzer(EXP, CONFIG)
    a.ingest(cut)
    a.tick()
    live = next(r for r in a.results() if isinstance(r, LiveFigures))
    assert live.open_episodes == ["target:gateway"]


_KINDS = st.sampled_from(["send", "receive", "receive_5xx", "error", "connect", "close", "drop"])


@st.composite
def _session_events(draw: st.DrawFn) -> list[Event]:
    """Random session events of a few sessions over ~20 s, each kind as generators write it."""
    out: list[Event] = []
    ids = {"experiment_id": EXP, "run_id": "r", "generator_id": "g"}
    for i in range(draw(st.integers(0, 120))):
        who = draw(st.sampled_from(["a", "b", "c"]))
        sess = {"tenant": f"t-{who}", "user": "u", "session": who, "target": "gw",
                "protocol": "ws", "ts_ns": T0 + draw(st.integers(0, 20 * S))}  # fmt: skip
        kind = draw(_KINDS)
        if kind == "send":
            out.append(Send(**ids, **sess, seq=i, bytes=1, expect="none"))
        elif kind == "receive":
            lat = draw(st.floats(0, 5000, allow_nan=False))
            out.append(Receive(**ids, **sess, bytes=1, latency_ms=lat))
        elif kind == "receive_5xx":
            out.append(Receive(**ids, **sess, bytes=1, status=draw(st.integers(500, 599))))
        elif kind == "error":
            out.append(SessionError(**ids, **sess, error_class="x", message="m", phase="send"))
        elif kind == "connect":
            out.append(Connected(**ids, **sess, connect_ms=1.0))
        else:
            by = "server" if kind == "close" else "error"
            code = draw(st.sampled_from([None, 1000, 1001, 1006, 1011]))
            out.append(Disconnect(**ids, **sess, by=by, code=code, reason=""))
    return sorted(out, key=lambda e: e.ts_ns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_session_events())
def test_the_series_adds_up_to_the_load_summary(events: list[Event]) -> None:
    """Whatever the events, the buckets hold exactly what the whole run's load record counts:
    one failure rule, one set of events."""
    series, _, results = _fold(events)
    (load,) = [r for r in results if isinstance(r, LoadSummary) and r.scope == "overall"
               and not r.phase] or [None]  # fmt: skip
    totals = (
        sum(b.sent for b in series.buckets),
        sum(b.received for b in series.buckets),
        sum(b.connects for b in series.buckets),
        sum(b.errors for b in series.buckets),
    )
    if load is None:
        assert totals == (0, 0, 0, 0)
        return
    assert totals == (load.sent, load.received, load.connects, sum(load.errors.values()))
