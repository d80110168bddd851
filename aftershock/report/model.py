"""What a report is made of: the run's identity, its result records, and a time series.

:class:`RunData` is everything the HTML, Markdown, JSON and JUnit renderings read. It is built
from a run's event log (:mod:`aftershock.report.series` derives the time series and fault
windows; the analyzers derive the result records) and stored as ``results.json``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Frozen
from schemas.events import EventAdapter
from schemas.results import (
    Availability,
    Cascade,
    FailureEpisode,
    Integrity,
    IsolationViolation,
    LatencySummary,
    ResultEvent,
    UserRecovery,
    Verdict,
)

RunStatus = Literal["completed", "failed", "aborted", "interrupted", "error"]


class RunMeta(Frozen):
    experiment_id: str
    run_id: str
    title: str = ""
    started_ns: int | None = None
    ended_ns: int | None = None
    status: RunStatus = "completed"
    note: str = ""
    """Why a run ended early (abort reason, interruption), empty otherwise."""


class FaultWindow(Frozen):
    """When a fault was in force: from its first add/disable to its first remove/enable."""

    label: str
    proxy: str
    fault_type: str
    """The toxic type, or ``down`` for a disabled proxy."""
    start_s: float = Field(ge=0)
    """Seconds since the run's origin."""
    end_s: float | None = None
    """None when the log ends while the fault is still in force."""


class Bucket(Frozen):
    """Client-side figures of one time bucket (all targets together)."""

    start_s: float
    sent: int = 0
    received: int = 0
    errors: int = 0
    connects: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None


class TimeSeries(Frozen):
    origin_ns: int = 0
    bucket_s: float = Field(default=1.0, gt=0)
    buckets: list[Bucket] = Field(default_factory=list)
    windows: list[FaultWindow] = Field(default_factory=list)

    @property
    def span_s(self) -> float:
        ends = [b.start_s + self.bucket_s for b in self.buckets]
        ends += [w.end_s if w.end_s is not None else w.start_s for w in self.windows]
        return max(ends, default=0.0)


class RunData(Frozen):
    """One run: the content of ``results.json``."""

    format: Literal["aftershock.run/1"] = "aftershock.run/1"
    meta: RunMeta
    results: list[dict[str, object]] = Field(default_factory=list)
    """Result records (``result.*`` events) as JSON objects, see :meth:`records`."""
    series: TimeSeries = Field(default_factory=TimeSeries)

    @classmethod
    def of(cls, meta: RunMeta, results: list[ResultEvent], series: TimeSeries) -> RunData:
        return cls(
            meta=meta,
            results=[r.model_dump(mode="json") for r in results],
            series=series,
        )

    def records(self) -> list[ResultEvent]:
        out: list[ResultEvent] = []
        for raw in self.results:
            ev = EventAdapter.validate_python(raw)
            if ev.kind.startswith("result."):
                out.append(ev)  # type: ignore[arg-type]
        return out


class Findings:
    """The result records of a run, sorted by kind, for the renderers."""

    def __init__(self, records: list[ResultEvent]) -> None:
        self.all = records
        self.availability = sorted(
            (r for r in records if isinstance(r, Availability)),
            key=lambda r: (r.scope != "target", r.scope, r.scope_key),
        )
        self.episodes = sorted(
            (r for r in records if isinstance(r, FailureEpisode)),
            key=lambda r: (r.started_ns, r.scope, r.scope_key),
        )
        self.recoveries = sorted(
            (r for r in records if isinstance(r, UserRecovery)),
            key=lambda r: (r.scope != "target", r.scope, r.scope_key),
        )
        self.violations = sorted(
            (r for r in records if isinstance(r, IsolationViolation)), key=lambda r: r.seen_ns
        )
        self.integrity = sorted(
            (r for r in records if isinstance(r, Integrity)), key=lambda r: (r.scope, r.scope_key)
        )
        self.latency = sorted(
            (r for r in records if isinstance(r, LatencySummary)),
            key=lambda r: (r.scope, r.scope_key, r.phase),
        )
        self.cascades = sorted(
            (r for r in records if isinstance(r, Cascade)), key=lambda r: r.fault_id
        )
        verdicts = [r for r in records if isinstance(r, Verdict)]
        self.phase_verdicts = sorted((v for v in verdicts if v.phase), key=lambda v: v.phase)
        run = [v for v in verdicts if not v.phase]
        self.verdict: Verdict | None = run[0] if run else None

    @property
    def passed(self) -> bool | None:
        return None if self.verdict is None else self.verdict.passed

    def failing_checks(self) -> list[str]:
        if self.verdict is None:
            return []
        return [c.name for c in self.verdict.checks if not c.passed]

    def availability_of(self, scope: str, key: str) -> Availability | None:
        for a in self.availability:
            if a.scope == scope and a.scope_key == key:
                return a
        return None

    def overall_integrity(self) -> Integrity | None:
        for i in self.integrity:
            if i.scope == "overall":
                return i
        return None

    def overall_latency(self) -> LatencySummary | None:
        for lat in self.latency:
            if lat.scope == "overall" and not lat.phase:
                return lat
        return None


def fault_attribution(faults_active: list[str], faults_after: list[str]) -> str:
    """How a finding is attributed, for the report: ``f1 (during), f0 (after)``; ``–`` none."""
    parts = [f"{f} (during)" for f in faults_active] + [f"{f} (after)" for f in faults_after]
    return ", ".join(parts) or "–"
