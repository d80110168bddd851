"""Every threshold the analyses use, in one frozen model, and the SLO input of the verdict.

A run's configuration travels in its event log (``experiment.analysis``), so whoever analyses
the log later — a worker, ``aftershock replay`` — judges it exactly as it was judged live.
Of :class:`AnalyzerConfig`, the fields in :data:`PROCESSING_FIELDS` say how a reader puts the
stream back in order and are the reader's own; every other field says what the figures mean
and is taken from the log.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from schemas.base import Frozen
from schemas.targets import TargetGraph  # noqa: TC001 - pydantic resolves it at runtime


class _Finite(Frozen):
    # Every number here is finite: JSON, which carries a configuration to a run's log and its
    # analysis.json, has no infinity (pydantic would write null).
    model_config = ConfigDict(allow_inf_nan=False)


class HealthThresholds(_Finite):
    """When a health key (target, tenant, overall) goes DOWN and when it is UP again.

    DOWN: within the last ``window_s`` there are at least ``min_failures`` failed
    observations and they are at least ``fail_ratio`` of all observations.
    Recovery: the first successful observation starts RECOVERING; the key is UP again once
    ``recover_hold_s`` pass without the failure condition recurring (counting only
    observations since recovery began). A relapse returns to DOWN within the same episode,
    which is how flapping stays one episode.
    """

    window_s: float = Field(default=2.0, gt=0)
    min_failures: int = Field(default=3, ge=1)
    fail_ratio: float = Field(default=0.5, gt=0, le=1)
    recover_hold_s: float = Field(default=3.0, ge=0)


class SloSpec(_Finite):
    """Service level objectives a run (and each phase of it) is judged against.

    ``target`` None judges the figures of the whole system, else those of that target.
    ``None`` leaves a check out. An experiment's ``slos`` entry maps field by field:
    ``target``, ``availability_pct`` → ``availability_min_pct``, ``p99_latency_ms`` →
    ``p99_max_ms``, ``mttr`` (s) → ``mttr_max_s``, ``isolation_violations`` →
    ``max_isolation_violations``.
    """

    target: str | None = None

    availability_min_pct: float | None = Field(default=None, ge=0, le=100)
    p99_max_ms: float | None = Field(default=None, gt=0)
    mttr_max_s: float | None = Field(default=None, ge=0)
    max_isolation_violations: int | None = Field(default=0, ge=0)
    max_error_ratio: float | None = Field(default=None, ge=0)
    max_loss_ratio: float | None = Field(default=None, ge=0, le=1)
    recovery_p95_max_s: float | None = Field(default=None, ge=0)
    """User-experienced recovery: the p95, over sessions, of first failure → first success
    after it, at most this."""
    no_data_fails: bool = False
    """A check with nothing to judge (no latency sample, no finished episode, no traffic) is
    reported as "no data"; it fails the verdict only when this is set."""


class AnalyzerConfig(_Finite):
    allowed_lateness_s: float = Field(default=0.5, ge=0)
    """Events are held this long (event time) so out-of-order arrivals are put back in order."""
    dedup_horizon_s: float = Field(default=10.0, gt=0)
    """How long (event time) an event id is remembered after release, to spot duplicates;
    events older than this behind the watermark are dropped (``too_late``)."""
    health: HealthThresholds = Field(default_factory=HealthThresholds)
    reply_timeout_s: float = Field(default=5.0, gt=0)
    """An expected echo/broadcast/response not seen within this is lost."""
    reorder_window: int = Field(default=256, ge=16)
    """Per (receiver, origin) pair, how many sequence numbers below the highest are tracked
    for duplicate detection."""
    after_effect_s: float = Field(default=5.0, ge=0)
    """An episode or violation that begins within this long after a fault ended, with no
    fault active, is attributed to that fault as its after-effect."""
    violation_examples: int = Field(default=5, ge=0)
    """Of each isolation group (kind, target, origin and victim tenant, faults), how many
    violations are kept as individual ``result.isolation_violation`` records (the first
    ones seen); the group's ``result.isolation_group`` counts every one."""
    burst_gap_s: float = Field(default=0.5, gt=0)
    burst_min_errors: int = Field(default=5, ge=2)
    baseline_phase: str = "baseline"
    slos: list[SloSpec] = Field(default_factory=lambda: [SloSpec()])
    """Checked for every phase and for the whole run; by default: no isolation violation."""
    graph: TargetGraph | None = None
    series_bucket_s: float = Field(default=1.0, gt=0)
    """Width of the time series' buckets (``result.series``)."""
    clock_offsets_ns: dict[str, int] = Field(default_factory=dict)
    """Known constant wall-clock offset of a generator (added to its timestamps)."""
    max_clock_step_s: float = Field(default=600.0, gt=0)
    """A generator whose (wall - monotonic) moves by more than this restarted: re-anchor it."""
    source_idle_s: float = Field(default=5.0, gt=0)
    """A source (partition) silent this long (processing clock) stops holding the watermark."""
    idle_flush_s: float = Field(default=5.0, gt=0)
    """With no events for this long (processing clock), buffered events are released."""

    def with_analysis_of(self, logged: AnalyzerConfig) -> AnalyzerConfig:
        """This reader's processing settings with the meaning (every other field) of
        ``logged``, the configuration a run recorded in its log."""
        keep = {name: getattr(self, name) for name in PROCESSING_FIELDS}
        return logged.model_copy(update=keep)


PROCESSING_FIELDS = (
    "allowed_lateness_s",
    "dedup_horizon_s",
    "clock_offsets_ns",
    "max_clock_step_s",
    "source_idle_s",
    "idle_flush_s",
)
"""How a reader orders the stream (event time, lateness, duplicates, idleness): its own."""
