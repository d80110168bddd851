"""Analyzer result records (``result.*`` events).

Results are events too: they go to the results topic and into Redis, and replaying the log
must reproduce them exactly. ``scope`` names what a figure is about: ``target``, ``tenant``
or ``overall``; ``scope_key`` is the target or tenant name (empty for overall).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import EventBase, Frozen, Identifier

Scope = Literal["target", "tenant", "overall"]


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
    error_classes: dict[str, int] = Field(default_factory=dict)
    time_to_impact_ms: float | None = None
    time_to_recover_ms: float | None = None


class Availability(ResultBase):
    kind: Literal["result.availability"] = "result.availability"
    availability_pct: float = Field(ge=0, le=100)
    episodes: int = Field(ge=0)
    mtbf_s: float | None = None
    mttr_s: float | None = None
    observed_s: float = Field(ge=0)


class IsolationViolation(ResultBase):
    kind: Literal["result.isolation_violation"] = "result.isolation_violation"
    victim_tenant: Identifier
    victim_session: Identifier
    victim_trace_id: str | None = None
    origin_tenant: Identifier
    origin_session: str | None = None
    origin_trace_id: str | None = None
    origin_seq: int | None = None
    seen_ns: int
    faults_active: list[str] = Field(default_factory=list)
    source_event_id: str


class Integrity(ResultBase):
    kind: Literal["result.integrity"] = "result.integrity"
    sent: int = Field(ge=0)
    received: int = Field(ge=0)
    lost: int = Field(ge=0)
    duplicated: int = Field(ge=0)
    reordered: int = Field(ge=0)
    corrupted: int = Field(ge=0)


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
    target: Identifier
    failed_after_ms: float = Field(ge=0)
    via: str | None = None


class Cascade(ResultBase):
    kind: Literal["result.cascade"] = "result.cascade"
    fault_id: Identifier
    origin_target: Identifier
    hops: list[CascadeHop] = Field(default_factory=list)
    blast_targets: int = Field(ge=0)
    blast_tenants: int = Field(ge=0)
    blast_sessions: int = Field(ge=0)
    contained: bool


class SloCheck(Frozen):
    name: Identifier
    passed: bool
    observed: float | None = None
    threshold: float | None = None
    reason: str = ""


class Verdict(ResultBase):
    kind: Literal["result.verdict"] = "result.verdict"
    phase: str = ""
    passed: bool
    checks: list[SloCheck] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


ResultEvent = (
    FailureEpisode
    | Availability
    | IsolationViolation
    | Integrity
    | LatencySummary
    | Cascade
    | Verdict
)

RESULT_TYPES: tuple[type[ResultBase], ...] = (
    FailureEpisode,
    Availability,
    IsolationViolation,
    Integrity,
    LatencySummary,
    Cascade,
    Verdict,
)
