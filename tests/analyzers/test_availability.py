"""Golden sequences for episodes, availability, MTBF, MTTR, attribution and clock skew."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from analyzers.core import Analyzer, AnalyzerConfig
from tests.analyzers.build import (
    EXP,
    disabled,
    enabled,
    fail,
    ns,
    ok,
    one,
    probe,
    toxic_added,
    toxic_removed,
)

if TYPE_CHECKING:
    from schemas.events import Event


def run(events: list[Event], config: AnalyzerConfig | None = None) -> list:
    a = Analyzer(EXP, config)
    a.ingest(events)
    a.finish()
    return a.results()


def two_outages() -> list[Event]:
    events = probe(0, 100_000, [(20_000, 30_000), (60_000, 80_000)])
    events += [
        # the same toxic reported by the injector and by the proxy: one window
        toxic_added(19_500, "gw-proxy", "f1", source="injector", fault_id="f1"),
        toxic_added(19_500.2, "gw-proxy", "f1", source="proxy", gen="proxy"),
        toxic_removed(29_000, "gw-proxy", "f1", source="proxy", gen="proxy"),
        toxic_removed(29_000.3, "gw-proxy", "f1", source="injector"),
        disabled(59_800, "gw-proxy", fault_id="f2"),
        enabled(79_000, "gw-proxy"),
    ]
    return sorted(events, key=lambda e: e.ts_ns)


def test_outages_of_known_length_give_exact_mttr_mtbf_and_availability() -> None:
    results = run(two_outages())
    av = one(results, "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 2
    assert av.observed_s == pytest.approx(100.0)
    assert av.downtime_s == pytest.approx(30.0)
    assert av.availability_pct == pytest.approx(70.0)
    assert av.mttr_s == pytest.approx(15.0)
    assert av.mtbf_s == pytest.approx(35.0)
    for scope, key in (("tenant", "a"), ("overall", "")):
        other = one(results, "result.availability", scope=scope, scope_key=key)
        assert other.availability_pct == pytest.approx(70.0)


def test_episodes_are_attributed_with_time_to_impact_and_recover() -> None:
    results = run(two_outages())
    e1 = one(results, "result.episode", episode_id="target:gw:1")
    assert (e1.started_ns, e1.ended_ns) == (ns(20_000), ns(30_000))
    assert e1.duration_ms == pytest.approx(10_000)
    assert e1.faults_active == ["f1"]
    assert e1.fault_relation == "during"
    # measured from the proxy's own report (19.5002 s), not the injector's request (19.5 s)
    assert e1.time_to_impact_ms == pytest.approx(499.8)
    assert e1.time_to_recover_ms == pytest.approx(1000)
    assert e1.error_classes == {"timeout": 100}
    e2 = one(results, "result.episode", episode_id="target:gw:2")
    assert e2.faults_active == ["f2"]
    assert e2.time_to_impact_ms == pytest.approx(200)
    assert e2.time_to_recover_ms == pytest.approx(1000)


def test_flapping_is_one_episode() -> None:
    # down 20-24 s, a 1 s blip of success (shorter than the 3 s hold), down again 25-30 s
    events = probe(0, 60_000, [(20_000, 24_000), (25_000, 30_000)])
    results = run(events)
    av = one(results, "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 1
    assert av.mttr_s == pytest.approx(10.0)
    ep = one(results, "result.episode", scope="target")
    assert (ep.started_ns, ep.ended_ns) == (ns(20_000), ns(30_000))


def test_recovery_longer_than_the_hold_splits_episodes() -> None:
    events = probe(0, 60_000, [(20_000, 24_000), (28_000, 30_000)])
    av = one(run(events), "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 2
    assert av.mttr_s == pytest.approx(3.0)


def test_scattered_errors_below_the_thresholds_are_no_episode() -> None:
    events = [fail(t, cls="reset") if t % 1000 == 0 else ok(t) for t in range(0, 30_000, 100)]
    av = one(run(events), "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 0
    assert av.availability_pct == 100.0
    assert av.mtbf_s is None
    assert av.mttr_s is None


def test_overlapping_faults_are_both_attributed_latest_one_times_impact() -> None:
    events = probe(0, 60_000, [(22_000, 35_000)])
    events += [
        toxic_added(10_000, "db", "f1", "latency", fault_id="f1"),
        toxic_added(20_000, "gw-proxy", "f2", "reset_peer", fault_id="f2"),
        toxic_removed(30_000, "gw-proxy", "f2"),
        toxic_removed(40_000, "db", "f1"),
    ]
    results = run(sorted(events, key=lambda e: e.ts_ns))
    ep = one(results, "result.episode", episode_id="target:gw:1")
    assert ep.faults_active == ["f1", "f2"]
    assert ep.time_to_impact_ms == pytest.approx(2000)
    assert ep.time_to_recover_ms == pytest.approx(5000)


def test_recovering_before_the_revert_has_no_time_to_recover() -> None:
    events = probe(0, 60_000, [(22_000, 28_000)])
    events += [toxic_added(20_000, "p", "f1", fault_id="f1"), toxic_removed(30_000, "p", "f1")]
    ep = one(run(sorted(events, key=lambda e: e.ts_ns)), "result.episode", scope="target")
    assert ep.time_to_recover_ms is None


def test_open_episode_at_end_counts_as_downtime_without_mttr() -> None:
    events = probe(0, 50_000, [(40_000, 60_000)])
    av = one(run(events), "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 1
    assert av.downtime_s == pytest.approx(10.0)
    assert av.mttr_s is None
    assert av.availability_pct == pytest.approx(80.0)


def test_generator_wall_clock_step_does_not_change_intervals() -> None:
    """A generator's wall clock jumps back 30 s mid-outage (an NTP step); its monotonic clock
    does not. Event time follows the monotonic clock, so the outage is still exactly 10 s."""
    events: list[Event] = []
    for i in range(0, 601):
        t = i * 100.0
        wall = t if t < 25_000 else t - 30_000
        if 20_000 <= t < 30_000:
            events.append(fail(wall, mono_ms=t + 1))
        else:
            events.append(ok(wall, mono_ms=t + 1))
    a = Analyzer(EXP)
    a.ingest(events)
    a.finish()
    av = one(a.results(), "result.availability", scope="target", scope_key="gw")
    assert av.episodes == 1
    assert av.mttr_s == pytest.approx(10.0)
    assert a.stats().late == 0


def test_known_constant_offset_between_generators_is_corrected() -> None:
    """Generator g2's clock runs 5 s behind; with its offset configured, its failures line up
    with the fault the injector reports."""
    events: list[Event] = [toxic_added(20_000, "gw-proxy", "f1", fault_id="f1")]
    for i in range(0, 601):
        t = i * 100.0
        make = fail if 20_200 <= t < 30_000 else ok
        events.append(make(t - 5_000, gen="g2"))
    cfg = AnalyzerConfig(clock_offsets_ns={"g2": 5_000_000_000}, allowed_lateness_s=10)
    ep = one(run(events, cfg), "result.episode", scope="target")
    assert ep.faults_active == ["f1"]
    assert ep.time_to_impact_ms == pytest.approx(200)
