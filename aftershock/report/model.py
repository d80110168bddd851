"""What a report is made of: the run's identity and its result records.

:class:`RunData` is everything the HTML, Markdown, JSON and JUnit renderings read, stored as
``results.json``. Every figure in it, the time series and the verdict included, is a result
record of the analyzers (:mod:`analyzers.core`); the renderings only format them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from analyzers.core.verdict import exit_code, settle
from analyzers.report import canonical
from schemas.base import Frozen
from schemas.events import EventAdapter
from schemas.results import (
    Availability,
    Cascade,
    FailureEpisode,
    Integrity,
    IsolationGroup,
    IsolationViolation,
    LatencySummary,
    LiveFigures,
    ResultEvent,
    SloCheck,
    TimeSeries,
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


class RunData(Frozen):
    """One run: the content of ``results.json``."""

    format: Literal["aftershock.run/2"] = "aftershock.run/2"
    meta: RunMeta
    results: list[dict[str, object]] = Field(default_factory=list)
    """Result records (``result.*`` events) as JSON objects, see :meth:`records`."""

    @classmethod
    def of(cls, meta: RunMeta, results: list[ResultEvent]) -> RunData:
        """The run's data; the run verdict is settled with how the run ended (``meta``)."""
        settled = [
            settle(r, meta.status, meta.note) if isinstance(r, Verdict) and not r.phase else r
            for r in results
        ]
        ended_early = meta.status in ("interrupted", "aborted", "error")
        if ended_early and not any(isinstance(r, Verdict) and not r.phase for r in results):
            # A run stopped before its analysis judged anything still has one verdict, which
            # says how the run ended, so every output says it the same way.
            empty = Verdict(
                experiment_id=meta.experiment_id,
                run_id=meta.run_id,
                generator_id="analyzer",
                ts_ns=meta.ended_ns or meta.started_ns or 0,
                passed=False,
                reasons=["the analysis gave no run verdict"],
            )
            settled.append(settle(empty, meta.status, meta.note))
        # One order however the records were obtained (the run's analysis, its workers through
        # Redis, a replay): `aftershock replay --json` prints the same records in this order.
        return cls(meta=meta, results=[r.model_dump(mode="json") for r in canonical(settled)])

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
        """Examples: the first few violations of each group."""
        self.violation_groups = sorted(
            (r for r in records if isinstance(r, IsolationGroup)),
            key=lambda g: (-g.count, g.first_ns, g.group_id),
        )
        """Violations grouped by the analyzers (kind, target, tenants, faults), largest
        first."""
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
        series = [r for r in records if isinstance(r, TimeSeries)]
        self.series = (
            series[0]
            if series
            else TimeSeries(experiment_id="-", run_id="-", generator_id="-", ts_ns=0)
        )
        live = [r for r in records if isinstance(r, LiveFigures)]
        self.live: LiveFigures | None = live[0] if live else None

    @property
    def passed(self) -> bool | None:
        return None if self.verdict is None else self.verdict.passed

    @property
    def exit_code(self) -> int:
        """The process exit status the verdict gives (:func:`analyzers.core.verdict.exit_code`)."""
        return exit_code(self.verdict)

    @property
    def state(self) -> str:
        """PASS, FAIL, INTERRUPTED or NO VERDICT: the verdict's one-word form in every output."""
        v = self.verdict
        if v is None:
            return "NO VERDICT"
        if v.run_status == "interrupted":
            return "INTERRUPTED"
        return "PASS" if v.passed else "FAIL"

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

    def target_episodes(self) -> list[FailureEpisode]:
        """Failure episodes of targets only: a tenant's and the overall episodes restate the
        same outage (their counts are in the availability table)."""
        return [e for e in self.episodes if e.scope == "target"]

    def latency_rows(self) -> list[LatencySummary]:
        """Latency summaries of the whole system and of each target, without empty ones."""
        return [x for x in self.latency if x.count and x.scope in ("overall", "target")]

    @property
    def violation_count(self) -> int:
        """Every isolation violation of the run: the sum of the groups' exact counts (the
        individual records are only a few examples of each group)."""
        return sum(g.count for g in self.violation_groups)

    def timebase(self, meta: RunMeta) -> TimeBase:
        origin = self.series.origin_ns or meta.started_ns or 0
        return TimeBase(origin)

    def recovery_sentence(self, tb: TimeBase) -> str:
        """Did every target recover before the run ended, and when: one sentence."""
        v = self.verdict
        if v is None or v.all_recovered is None:
            return "No target was observed."
        failed = [t for t in v.recovery if t.episodes]
        if not failed:
            return "No target failed."
        if v.all_recovered:
            return (
                f"Every target that failed recovered before the run ended; the last "
                f"({', '.join(t.target for t in failed if t.recovered_ns == v.recovered_ns)}) "
                f"at {tb.at(v.recovered_ns)}."
            )
        stuck = ", ".join(t.target for t in failed if not t.recovered)
        return f"Not every target recovered: {stuck} had not recovered when the run ended."


@dataclass(frozen=True)
class TimeBase:
    """Every time of a report is seconds from the run's start (``origin_ns``, the analyzers'
    time zero); the start's wall-clock time is stated once."""

    origin_ns: int

    def seconds(self, ns: int) -> float:
        return (ns - self.origin_ns) / 1e9

    def at(self, ns: int | None) -> str:
        return "–" if ns is None else f"{self.seconds(ns):.1f} s"

    def wall_clock(self) -> str:
        return dt.datetime.fromtimestamp(self.origin_ns / 1e9, tz=dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )

    def statement(self) -> str:
        return f"Started {self.wall_clock()}; every time below is seconds from this start."

    def duration_s(self, meta: RunMeta) -> float:
        if meta.ended_ns is None:
            return 0.0
        return max(0.0, (meta.ended_ns - (meta.started_ns or self.origin_ns)) / 1e9)


def check_status(c: SloCheck) -> str:
    """An SLO check's status as the outputs print it: pass, FAIL, or no data."""
    if c.status == "no_data":
        return "no data" + ("" if c.passed else " (FAIL)")
    return "pass" if c.passed else "FAIL"


def fault_attribution(faults_active: list[str], faults_after: list[str]) -> str:
    """How a finding is attributed, for the report: ``f1 (during), f0 (after)``; ``–`` none."""
    parts = [f"{f} (during)" for f in faults_active] + [f"{f} (after)" for f in faults_after]
    return ", ".join(parts) or "–"
