"""Analyzer result records (``result.*`` events).

Results are events too: they go to the results topic and into Redis, and replaying the log
must reproduce them exactly. ``scope`` names what a figure is about: ``target``, ``tenant``,
``fault`` (a fault id) or ``overall``; ``scope_key`` is the target, tenant or fault name (empty
for overall). Definitions of every figure are in ``docs/analyzers.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import EventBase, Frozen, Identifier

Scope = Literal["target", "tenant", "fault", "overall"]
Relation = Literal["during", "after"]
"""How a finding relates to the fault it is attributed to: it began while the fault was in
effect, or after the fault was lifted (an after-effect, within the configured window)."""


class ResultBase(EventBase):
    scope: Scope = "overall"
    scope_key: str = ""
    window_start_ns: int | None = None
    window_end_ns: int | None = None


class FailureEpisode(ResultBase):
    """A period during which a target (or tenant) was unhealthy, as seen by clients."""

    kind: Literal["result.episode"] = "result.episode"
    episode_id: Identifier
    started_ns: int
    ended_ns: int | None = None
    duration_ms: float | None = Field(default=None, ge=0)
    faults_active: list[str] = Field(default_factory=list)
    faults_after: list[str] = Field(default_factory=list)
    """Faults lifted shortly before the episode began (it is their after-effect)."""
    fault_relation: Relation | None = None
    """``during`` when it began while the fault it is measured against was in effect,
    ``after`` when it began after that fault was lifted, null when no fault is attributed."""
    error_classes: dict[str, int] = Field(default_factory=dict)
    time_to_impact_ms: float | None = None
    time_to_recover_ms: float | None = None


class Availability(ResultBase):
    kind: Literal["result.availability"] = "result.availability"
    availability_pct: float = Field(ge=0, le=100)
    episodes: int = Field(ge=0)
    mtbf_s: float | None = None
    mttr_s: float | None = None
    episode_median_s: float | None = None
    """Median duration of ended episodes (the spread beside ``mttr_s``, their mean)."""
    episode_max_s: float | None = None
    observed_s: float = Field(ge=0)
    downtime_s: float = Field(default=0.0, ge=0)


class UserRecovery(ResultBase):
    """How long sessions were without service as they lived it: per session, its first failure
    to its first success after it (``docs/analyzers.md``)."""

    kind: Literal["result.recovery"] = "result.recovery"
    recoveries: int = Field(ge=0)
    unrecovered: int = Field(default=0, ge=0)
    """Sessions still failing when the stream ended (not in the quantiles)."""
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None


class IsolationViolation(ResultBase):
    """A message that reached a session it must never reach.

    ``violation`` is ``tenant`` when the stamp's origin tenant differs from the receiver's,
    ``user`` when a private reply (echo/response, no channel) of one session reached another
    session of the same tenant, and ``subscription`` when a same-tenant message on ``channel``
    reached a session that never subscribed to that channel.
    """

    kind: Literal["result.isolation_violation"] = "result.isolation_violation"
    violation: Literal["tenant", "user", "subscription"] = "tenant"
    channel: str | None = None
    target: str = ""
    victim_tenant: Identifier
    victim_user: str | None = None
    victim_session: Identifier
    victim_trace_id: str | None = None
    origin_tenant: Identifier
    origin_user: str | None = None
    origin_session: str | None = None
    origin_trace_id: str | None = None
    origin_seq: int | None = None
    seen_ns: int
    faults_active: list[str] = Field(default_factory=list)
    faults_after: list[str] = Field(default_factory=list)
    fault_relation: Relation | None = None
    source_event_id: str


class IsolationGroup(ResultBase):
    """Every isolation violation of one kind from one origin tenant to one victim tenant on
    one target, under the same faults: the exact ``count``, the first and last time one was
    seen, and a few examples. The figures the SLOs and the report use; the individual
    ``result.isolation_violation`` records are only the first few of each group
    (``AnalyzerConfig.violation_examples``)."""

    kind: Literal["result.isolation_group"] = "result.isolation_group"
    group_id: str
    """``kind/target/origin>victim/faults during/faults after``: the group's key."""
    violation: Literal["tenant", "user", "subscription"] = "tenant"
    target: str = ""
    origin_tenant: Identifier
    victim_tenant: Identifier
    faults_active: list[str] = Field(default_factory=list)
    """The faults in effect when these violations were seen (attributed "during")."""
    faults_after: list[str] = Field(default_factory=list)
    """Faults lifted within ``after_effect_s`` before, none active (attributed "after")."""
    count: int = Field(ge=1)
    first_ns: int
    last_ns: int
    example_trace_ids: list[str] = Field(default_factory=list)
    """Victim trace ids of the first violations that had one, at most the example cap."""
    example_sessions: list[str] = Field(default_factory=list)
    """Victim sessions of the first violations (distinct), at most the example cap."""
    examples_kept: int = Field(default=0, ge=0)
    """How many of the group's violations are kept as ``result.isolation_violation``."""


class Integrity(ResultBase):
    kind: Literal["result.integrity"] = "result.integrity"
    sent: int = Field(ge=0)
    received: int = Field(ge=0)
    lost: int = Field(ge=0)
    duplicated: int = Field(ge=0)
    reordered: int = Field(ge=0)
    corrupted: int = Field(ge=0)
    late_replies: int = Field(default=0, ge=0)


class LatencySummary(ResultBase):
    kind: Literal["result.latency"] = "result.latency"
    phase: str = ""
    count: int = Field(ge=0)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None


class CascadeHop(Frozen):
    """One target that failed after the fault: ``failed_after_ms`` since the fault began,
    ``hop_delay_ms`` since ``via`` (the dependency it calls that had failed before it) failed."""

    target: Identifier
    failed_after_ms: float = Field(ge=0)
    via: str | None = None
    hop_delay_ms: float | None = None
    relation: Relation = "during"


class Cascade(ResultBase):
    kind: Literal["result.cascade"] = "result.cascade"
    fault_id: Identifier
    origin_target: Identifier
    hops: list[CascadeHop] = Field(default_factory=list)
    blast_targets: int = Field(ge=0)
    blast_tenants: int = Field(ge=0)
    blast_sessions: int = Field(ge=0)
    contained: bool


CheckStatus = Literal["pass", "fail", "no_data"]


class SloCheck(Frozen):
    """One SLO judged on its figure. ``status`` ``no_data`` when nothing was observed to judge
    it on; such a check fails (``passed`` false) only when its SLO says no data fails."""

    name: Identifier
    passed: bool
    status: CheckStatus = "pass"
    observed: float | None = None
    threshold: float | None = None
    reason: str = ""


class ProbeCheck(Frozen):
    """One run of one steady-state hypothesis probe: ``when`` it ran (before the method,
    during it, after it), from ``started_ns`` for ``duration_s`` (clock-corrected event
    time), and whether its tolerance was met."""

    probe: Identifier
    when: Literal["before", "during", "after"]
    started_ns: int
    duration_s: float = Field(ge=0)
    met: bool
    reason: str = ""


class TargetRecovery(Frozen):
    """Whether a target was healthy when the run ended: ``recovered_ns`` is the end of its
    last failure episode (None: it never failed, or had not recovered)."""

    target: Identifier
    episodes: int = Field(ge=0)
    recovered: bool
    recovered_ns: int | None = None


class Verdict(ResultBase):
    """Whether a phase (``phase`` empty: the whole run) passed.

    A phase verdict holds its SLO checks only. The run verdict also holds the steady-state
    hypothesis (every probe, every time it ran), the safeguards that stopped the run, whether
    every target had recovered when the run ended, and whether the run was interrupted;
    ``reasons`` lists every failing part. Definitions in ``docs/analyzers.md``.
    """

    kind: Literal["result.verdict"] = "result.verdict"
    phase: str = ""
    passed: bool
    checks: list[SloCheck] = Field(default_factory=list)
    hypothesis: list[ProbeCheck] = Field(default_factory=list)
    safeguards: list[str] = Field(default_factory=list)
    """Why a safeguard stopped the run (at most one: the first stops it)."""
    recovery: list[TargetRecovery] = Field(default_factory=list)
    all_recovered: bool | None = None
    """Every target that had a failure episode recovered before the run ended; None when no
    target was observed."""
    recovered_ns: int | None = None
    """When the last target recovered (None when none failed or one had not recovered)."""
    run_status: Literal["completed", "failed", "aborted", "interrupted", "error"] | None = None
    """How the run ended, when known (``experiment.ended``, or the game day's own record)."""
    interrupted: str | None = None
    """Why the run was interrupted or aborted; None when it ran to its end."""
    reasons: list[str] = Field(default_factory=list)


class LoadSummary(ResultBase):
    """Traffic in one phase (``phase`` empty: the whole run) and its change against baseline.

    ``*_degradation_pct`` are positive when worse than the baseline phase: p99 latency up,
    throughput down; ``error_ratio_delta`` is this phase's error ratio minus the baseline's.
    """

    kind: Literal["result.load"] = "result.load"
    phase: str = ""
    duration_s: float = Field(ge=0)
    sent: int = Field(ge=0)
    received: int = Field(ge=0)
    connects: int = Field(ge=0)
    throughput_per_s: float = Field(ge=0)
    connect_rate_per_s: float = Field(ge=0)
    errors: dict[str, int] = Field(default_factory=dict)
    error_rate_per_s: float = Field(ge=0)
    error_ratio: float = Field(ge=0)
    p99_degradation_pct: float | None = None
    throughput_degradation_pct: float | None = None
    error_ratio_delta: float | None = None


class ErrorBurst(ResultBase):
    """Errors on one target clustered in time: no gap between consecutive errors exceeded the
    configured burst gap, and there were at least the configured minimum of them."""

    kind: Literal["result.error_burst"] = "result.error_burst"
    burst_id: Identifier
    target: Identifier
    started_ns: int
    ended_ns: int
    errors: int = Field(ge=1)
    error_classes: dict[str, int] = Field(default_factory=dict)
    faults_active: list[str] = Field(default_factory=list)


class FaultFingerprint(ResultBase):
    """Which error classes clients saw while a fault of ``fault_type`` was active."""

    kind: Literal["result.fingerprint"] = "result.fingerprint"
    fault_type: Identifier
    faults: list[str] = Field(default_factory=list)
    errors: int = Field(ge=0)
    error_classes: dict[str, int] = Field(default_factory=dict)


class SeriesBucket(Frozen):
    """Client-side figures of one time bucket (all targets together); ``start_s`` is seconds
    from the run's origin. ``errors`` counts failures as the analyzers define them."""

    start_s: float
    sent: int = Field(default=0, ge=0)
    received: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    connects: int = Field(default=0, ge=0)
    p50_ms: float | None = None
    p99_ms: float | None = None


class SeriesWindow(Frozen):
    """A fault window of the analyzers (:mod:`analyzers.core.faults`), in seconds from the
    run's origin; ``end_s`` None when the log ends while it is still in force."""

    fault_id: Identifier
    proxy: str
    fault_type: str
    start_s: float = Field(ge=0)
    end_s: float | None = None


class TimeSeries(ResultBase):
    """The run as a time series: buckets of ``bucket_s`` from ``origin_ns`` (the
    ``experiment.started`` event, else the first event) and the fault windows."""

    kind: Literal["result.series"] = "result.series"
    origin_ns: int = 0
    bucket_s: float = Field(default=1.0, gt=0)
    buckets: list[SeriesBucket] = Field(default_factory=list)
    windows: list[SeriesWindow] = Field(default_factory=list)

    @property
    def span_s(self) -> float:
        ends = [b.start_s + self.bucket_s for b in self.buckets]
        ends += [w.end_s if w.end_s is not None else w.start_s for w in self.windows]
        return max(ends, default=0.0)


class LiveFigures(ResultBase):
    """What the dashboard shows, as of ``at_s`` (event time, seconds from the origin).

    Rates and p99 are over the last ``window_s`` seconds of complete buckets; the rest is
    the state at ``at_s``: the current phase, faults in force, connected sessions, open
    episodes, the overall MTTR and episode count, and isolation violations so far."""

    kind: Literal["result.live"] = "result.live"
    at_s: float = Field(ge=0)
    window_s: float = Field(gt=0)
    current_phase: str = ""
    """(Not ``phase``: results with a phase are per-phase records, one per phase.)"""
    active_faults: list[str] = Field(default_factory=list)
    sessions: int = Field(ge=0)
    throughput_per_s: float = Field(ge=0)
    error_rate_pct: float = Field(ge=0, le=100)
    p99_ms: float | None = None
    open_episodes: list[str] = Field(default_factory=list)
    episodes: int = Field(ge=0)
    mttr_s: float | None = None
    isolation_violations: int = Field(ge=0)
    events: int = Field(ge=0)


ResultEvent = (
    FailureEpisode
    | Availability
    | UserRecovery
    | IsolationViolation
    | IsolationGroup
    | Integrity
    | LatencySummary
    | Cascade
    | Verdict
    | LoadSummary
    | ErrorBurst
    | FaultFingerprint
    | TimeSeries
    | LiveFigures
)

RESULT_TYPES: tuple[type[ResultBase], ...] = (
    FailureEpisode,
    Availability,
    UserRecovery,
    IsolationViolation,
    IsolationGroup,
    Integrity,
    LatencySummary,
    Cascade,
    Verdict,
    LoadSummary,
    ErrorBurst,
    FaultFingerprint,
    TimeSeries,
    LiveFigures,
)
