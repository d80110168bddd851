"""Hypothesis strategies of analyzer configurations (``AnalyzerConfig``) and target graphs."""

from __future__ import annotations

from hypothesis import strategies as st

from analyzers.core import AnalyzerConfig, HealthThresholds, SloSpec
from schemas.targets import Target, TargetGraph

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


def positive(max_value: float = 1e9) -> st.SearchStrategy[float]:
    return st.floats(min_value=0, max_value=max_value, exclude_min=True)


def at_least_0(max_value: float = 1e9) -> st.SearchStrategy[float]:
    return st.floats(min_value=0, max_value=max_value)


@st.composite
def dags(draw: st.DrawFn, max_targets: int = 6) -> TargetGraph:
    """A graph without a cycle: each target depends only on targets listed after it."""
    order = draw(st.lists(names, max_size=max_targets, unique=True))
    targets = []
    for i, name in enumerate(order):
        later = order[i + 1 :]
        deps = draw(st.lists(st.sampled_from(later), unique=True)) if later else []
        targets.append(Target(name=name, upstream="127.0.0.1:1", depends_on=deps))
    draw(st.randoms()).shuffle(targets)
    return TargetGraph(targets=targets)


slo_specs = st.builds(
    SloSpec,
    target=st.none() | names,
    availability_min_pct=st.none() | st.floats(0, 100),
    p99_max_ms=st.none() | positive(),
    mttr_max_s=st.none() | at_least_0(),
    max_isolation_violations=st.none() | st.integers(0, 2**40),
    max_error_ratio=st.none() | at_least_0(),
    max_loss_ratio=st.none() | st.floats(0, 1),
    recovery_p95_max_s=st.none() | at_least_0(),
    no_data_fails=st.booleans(),
)
configs = st.builds(
    AnalyzerConfig,
    allowed_lateness_s=at_least_0(),
    dedup_horizon_s=positive(),
    health=st.builds(
        HealthThresholds,
        window_s=positive(),
        min_failures=st.integers(1, 2**31),
        fail_ratio=st.floats(0, 1, exclude_min=True),
        recover_hold_s=at_least_0(),
    ),
    reply_timeout_s=positive(),
    reorder_window=st.integers(16, 2**20),
    after_effect_s=at_least_0(),
    violation_examples=st.integers(0, 1000),
    burst_gap_s=positive(),
    burst_min_errors=st.integers(2, 1000),
    baseline_phase=st.text(max_size=12),
    slos=st.lists(slo_specs, max_size=3),
    graph=st.none() | dags(),
    series_bucket_s=positive(),
    clock_offsets_ns=st.dictionaries(names, st.integers(-(2**62), 2**62), max_size=3),
    max_clock_step_s=positive(),
    source_idle_s=positive(),
    idle_flush_s=positive(),
)
