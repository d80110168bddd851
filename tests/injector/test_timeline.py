"""Timeline arithmetic (pause, resume, skip) on an injected clock, and the safeguard fold."""

from __future__ import annotations

from injector.safeguards import SafeguardMonitor
from injector.timeline import Timeline
from schemas.experiment import (
    AvailabilitySafeguard,
    ErrorRateSafeguard,
    IsolationSafeguard,
    LatencySafeguard,
)
from schemas.results import Availability, IsolationGroup, LatencySummary

S = 1_000_000_000
COMMON = {"experiment_id": "e", "run_id": "r", "generator_id": "analyzer"}


class FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_pause_freezes_and_resume_continues() -> None:
    clock = FakeClock()
    t = Timeline(clock)
    assert t.offset_s() == 0.0
    t.start()
    clock.ns = 2 * S
    assert t.offset_s() == 2.0
    assert t.pause()
    assert not t.pause()
    clock.ns = 10 * S
    assert t.offset_s() == 2.0
    assert t.resume()
    assert not t.resume()
    clock.ns = 11 * S
    assert t.offset_s() == 3.0


def test_skip_jumps_forward_only() -> None:
    clock = FakeClock()
    t = Timeline(clock)
    t.start()
    clock.ns = 1 * S
    t.skip_to(30.0)
    assert t.offset_s() == 30.0
    t.skip_to(5.0)
    assert t.offset_s() == 30.0
    clock.ns = 2 * S
    assert t.offset_s() == 31.0


def _avail(pct: float, at_s: float, target: str = "") -> Availability:
    scope = "target" if target else "overall"
    return Availability(
        **COMMON,
        ts_ns=int(at_s * S),
        window_end_ns=int(at_s * S),
        scope=scope,
        scope_key=target,
        availability_pct=pct,
        episodes=0,
        observed_s=1,
    )


def test_error_rate_must_hold_for_the_whole_period() -> None:
    m = SafeguardMonitor([ErrorRateSafeguard(metric="error_rate", above_pct=50, **{"for": 10})])
    assert m.observe(_avail(40, 0)) is None  # 60 % errors: breach starts
    assert m.observe(_avail(40, 5)) is None
    assert m.observe(_avail(90, 8)) is None  # recovered: the clock restarts
    assert m.observe(_avail(30, 9)) is None
    assert m.observe(_avail(30, 18)) is None
    reason = m.observe(_avail(30, 19))
    assert reason is not None
    assert "error rate 70.0% > 50%" in reason


def test_safeguard_scoped_to_a_target_ignores_others() -> None:
    m = SafeguardMonitor(
        [AvailabilitySafeguard(metric="availability", below_pct=99, target="gateway")]
    )
    assert m.observe(_avail(10, 1)) is None
    assert m.observe(_avail(10, 1, "redis")) is None
    assert m.observe(_avail(10, 1, "gateway")) is not None


def test_isolation_and_latency() -> None:
    m = SafeguardMonitor(
        [
            IsolationSafeguard(metric="isolation_violations", above=1),
            LatencySafeguard(metric="p99_latency", above_ms=500),
        ]
    )

    def group(gid: str, count: int, target: str = "chat") -> IsolationGroup:
        return IsolationGroup(
            **COMMON,
            ts_ns=1,
            group_id=gid,
            target=target,
            victim_tenant="b",
            origin_tenant="a",
            count=count,
            first_ns=1,
            last_ns=1,
        )

    # A group is re-emitted with its growing count: its latest count is what is seen, not
    # the number of records (and examples of violations are not counted on their own).
    assert m.observe(group("g1", 1)) is None
    assert m.observe(group("g1", 1)) is None
    assert m.observe(group("g1", 1)) is None
    assert "(2 seen, limit 1)" in (m.observe(group("g2", 1)) or "")
    scoped = SafeguardMonitor([IsolationSafeguard(metric="isolation_violations", target="chat")])
    assert scoped.observe(group("g1", 5, target="other")) is None
    assert "(1 seen, limit 0)" in (scoped.observe(group("g2", 1)) or "")
    lat = LatencySummary(**COMMON, ts_ns=1, count=10, p99_ms=900.0)
    assert "p99 latency 900.0ms > 500ms" in (m.observe(lat) or "")
