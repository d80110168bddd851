"""The mergeable sketch, load and degradation figures, patterns and the verdict."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

import pytest

from analyzers.core import Analyzer, AnalyzerConfig, SloSpec
from spine.sketch import LogHistogram
from tests.analyzers.build import EXP, connected, fail, ok, one, phase, toxic_added, toxic_removed

if TYPE_CHECKING:
    from schemas.events import Event


def exact_quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[round(q * (len(s) - 1))]


def test_sketch_quantiles_are_within_relative_accuracy() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(3, 1.2) for _ in range(50_000)]
    h = LogHistogram()
    for v in values:
        h.add(v)
    for q in (0.5, 0.95, 0.99, 0.999):
        got = h.quantile(q)
        assert got is not None
        assert got == pytest.approx(exact_quantile(values, q), rel=0.011)
    assert h.quantile(1.0) == max(values)
    assert h.quantile(0.0) == min(values)


def test_sketch_merge_is_exact_in_any_order() -> None:
    rng = random.Random(2)
    values = [rng.expovariate(0.1) for _ in range(9_000)] + [0.0] * 10
    whole = LogHistogram()
    for v in values:
        whole.add(v)
    parts = [LogHistogram() for _ in range(3)]
    for i, v in enumerate(values):
        parts[i % 3].add(v)
    merged = LogHistogram()
    for p in reversed(parts):
        merged.merge(p)
    assert merged.counts == whole.counts
    assert merged.quantiles((0.5, 0.99, 0.999)) == whole.quantiles((0.5, 0.99, 0.999))


def test_sketch_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        LogHistogram().add(-1)
    with pytest.raises(ValueError, match="finite"):
        LogHistogram().add(math.inf)
    with pytest.raises(ValueError, match="relative_accuracy"):
        LogHistogram(relative_accuracy=2)
    assert LogHistogram().quantile(0.5) is None


def test_sketch_add_many_equals_adding_one_by_one() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(1, 2) for _ in range(5_000)] + [0.0, 1e-9, 7.5, 7.5]
    one_by_one, bulk = LogHistogram(), LogHistogram()
    for v in values:
        one_by_one.add(v)
    bulk.add_many(values[:1000])
    bulk.add_many(values[1000:])
    bulk.add_many([])
    assert bulk.counts == one_by_one.counts
    assert (bulk.zero_count, bulk.count, bulk.min, bulk.max) == (
        one_by_one.zero_count,
        one_by_one.count,
        one_by_one.min,
        one_by_one.max,
    )
    assert bulk.total == pytest.approx(one_by_one.total)


@pytest.mark.parametrize("bad", [-0.5, math.inf, math.nan])
def test_sketch_add_many_rejects_a_bad_value_and_keeps_what_it_had(bad: float) -> None:
    h = LogHistogram()
    h.add_many([1.0, 2.0])
    with pytest.raises(ValueError, match=f"got {bad}"):
        h.add_many([3.0, bad, 4.0])
    assert (h.count, h.total, h.max) == (2, 3.0, 2.0)


def phased_run() -> list[Any]:
    events: list[Event] = [phase(0, "baseline"), phase(10_000, "fault:slow")]
    events.append(toxic_added(10_000, "gw-proxy", "slow", "latency", fault_id="slow"))
    events.append(toxic_removed(20_000, "gw-proxy", "slow"))
    for i in range(100):  # baseline: 10 receives/s at 10 ms
        events.append(ok(i * 100, latency_ms=10.0))
    for i in range(50):  # fault: 5 receives/s at 40 ms, 5 errors/s
        events.append(ok(10_000 + i * 200, latency_ms=40.0))
        events.append(fail(10_100 + i * 200, cls="timeout"))
    events += [connected(0), connected(19_999)]
    a = Analyzer(
        EXP,
        AnalyzerConfig(
            slos=[SloSpec(p99_max_ms=20, availability_min_pct=99.0, max_error_ratio=0.1)],
            burst_gap_s=0.5,
        ),
    )
    a.ingest(sorted(events, key=lambda e: e.ts_ns))
    a.finish()
    return a.results()


def test_latency_and_load_per_phase_with_degradation_against_baseline() -> None:
    results = phased_run()
    base = one(results, "result.latency", scope="target", scope_key="gw", phase="baseline")
    assert base.count == 100
    assert base.p99_ms == pytest.approx(10.0, rel=0.01)
    slow = one(results, "result.latency", scope="target", scope_key="gw", phase="fault:slow")
    assert slow.p50_ms == pytest.approx(40.0, rel=0.01)
    whole = one(results, "result.latency", scope="target", scope_key="gw", phase="")
    assert whole.count == 150
    load = one(results, "result.load", scope="overall", phase="fault:slow")
    assert load.duration_s == pytest.approx(10.0)  # to the last event, the revert at 20 s
    assert load.throughput_per_s == pytest.approx(5.0)
    assert load.errors == {"timeout": 50}
    assert load.error_ratio == pytest.approx(50 / 101)
    assert load.p99_degradation_pct == pytest.approx(300.0, rel=0.02)
    assert load.throughput_degradation_pct == pytest.approx(50.0, rel=0.01)
    b = one(results, "result.load", scope="overall", phase="baseline")
    assert b.connect_rate_per_s == pytest.approx(0.1)
    assert b.p99_degradation_pct is None


def test_error_bursts_and_fingerprint_per_fault_type() -> None:
    results = phased_run()
    burst = one(results, "result.error_burst", target="gw")
    assert burst.errors == 50
    assert burst.faults_active == ["slow"]
    fp = one(results, "result.fingerprint", fault_type="latency")
    assert fp.error_classes == {"timeout": 50}
    assert fp.faults == ["slow"]


def test_verdict_per_phase_names_the_failed_checks() -> None:
    results = phased_run()
    base = one(results, "result.verdict", phase="baseline")
    assert base.passed is True
    slow = one(results, "result.verdict", phase="fault:slow")
    assert slow.passed is False
    failed = {c.name for c in slow.checks if not c.passed}
    assert failed == {"p99_latency", "availability", "error_ratio"}
    assert any("p99_latency" in r and "exceeds 20 ms" in r for r in slow.reasons)
    overall = one(results, "result.verdict", phase="")
    assert overall.passed is False


def test_per_target_slos_are_named_after_their_target() -> None:
    events: list[Event] = [ok(i * 100, latency_ms=50.0) for i in range(50)]
    events += [ok(i * 100, target="db", latency_ms=5.0) for i in range(50)]
    cfg = AnalyzerConfig(
        slos=[SloSpec(target="db", p99_max_ms=10), SloSpec(target="gw", p99_max_ms=10)]
    )
    a = Analyzer(EXP, cfg)
    a.ingest(sorted(events, key=lambda e: e.ts_ns))
    a.finish()
    v = one(a.results(), "result.verdict", phase="")
    assert [(c.name, c.passed) for c in v.checks if "p99" in c.name] == [
        ("db:p99_latency", True),
        ("gw:p99_latency", False),
    ]
    assert v.passed is False


def test_an_infinite_latency_counts_as_received_but_not_in_the_sketch() -> None:
    a = Analyzer(EXP)
    a.ingest([ok(0, latency_ms=5.0), ok(100, latency_ms=math.inf), ok(200)])
    a.finish()
    load = one(a.results(), "result.load", scope="overall", phase="")
    latency = one(a.results(), "result.latency", scope="overall", phase="")
    assert load.received == 3
    assert latency.count == 1
    assert latency.max_ms == 5.0
