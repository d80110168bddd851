"""The verdict: SLO checks per phase, and the one run verdict every output renders.

The steady-state checks of a phase are the SLOs applied to that phase's own figures:
availability over the phase, its p99 latency, its error ratio, isolation violations seen in
it, the MTTR of episodes that began in it and the p95 user-experienced recovery of session
outages that began in it. Loss is judged on the whole run. A check with
nothing to judge is ``no_data``; it fails only when its SLO says so (``no_data_fails``).

The run verdict (phase empty) adds what the experiment itself recorded, folded from its
events by :class:`RunRecord`: every run of every steady-state hypothesis probe
(``experiment.probe``), a safeguard that stopped the run and any other abort
(``experiment.aborted``), how the run ended (``experiment.ended``), events its event log lost
for good (``log.loss``: the figures are computed without them); and, from the health
state, whether every target had recovered when the run ended. :func:`settle` adds what only
the game day knows (it was interrupted, the system under test crashed), and
:func:`exit_code` turns the result into the process's exit status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.events import ExperimentAborted, ExperimentEnded, HypothesisProbeRan, LogLoss
from schemas.results import ProbeCheck, SloCheck, TargetRecovery, Verdict

if TYPE_CHECKING:
    from analyzers.core.config import SloSpec
    from analyzers.core.health import HealthKey

RunEvent = HypothesisProbeRan | ExperimentAborted | ExperimentEnded | LogLoss


@dataclass(frozen=True)
class PhaseFigures:
    availability_pct: float | None
    p99_ms: float | None
    mttr_s: float | None
    isolation_violations: int
    error_ratio: float | None
    loss_ratio: float | None
    recovery_p95_s: float | None = None


def judge(slos: SloSpec, f: PhaseFigures) -> tuple[bool, list[SloCheck]]:
    checks: list[SloCheck] = []

    def check(
        name: str, observed: float | None, limit: float | None, unit: str, *, at_least: bool
    ) -> None:
        if limit is None:
            return
        if observed is None:
            fails = slos.no_data_fails
            checks.append(
                SloCheck(
                    name=name,
                    passed=not fails,
                    status="no_data",
                    threshold=limit,
                    reason=f"{name}: no data" if fails else "",
                )
            )
            return
        ok = observed >= limit if at_least else observed <= limit
        if ok:
            reason = ""
        elif at_least:
            reason = f"{name} {observed:.3f}{unit} below {limit:g}{unit}"
        else:
            reason = f"{name} {observed:g}{unit} exceeds {limit:g}{unit}"
        checks.append(
            SloCheck(
                name=name,
                passed=ok,
                status="pass" if ok else "fail",
                observed=observed,
                threshold=limit,
                reason=reason,
            )
        )

    check("availability", f.availability_pct, slos.availability_min_pct, "%", at_least=True)
    check("p99_latency", f.p99_ms, slos.p99_max_ms, " ms", at_least=False)
    check("mttr", f.mttr_s, slos.mttr_max_s, " s", at_least=False)
    iso = slos.max_isolation_violations
    check(
        "isolation_violations",
        float(f.isolation_violations),
        None if iso is None else float(iso),
        "",
        at_least=False,
    )
    check("error_ratio", f.error_ratio, slos.max_error_ratio, "", at_least=False)
    check("loss_ratio", f.loss_ratio, slos.max_loss_ratio, "", at_least=False)
    check("recovery_p95", f.recovery_p95_s, slos.recovery_p95_max_s, " s", at_least=False)
    return all(c.passed for c in checks), checks


@dataclass
class RunRecord:
    """What the experiment's own events say about the run (folded in event-time order)."""

    probes: list[ProbeCheck] = field(default_factory=list)
    safeguards: list[str] = field(default_factory=list)
    aborted: str | None = None
    status: str | None = None
    failed_because: str = ""
    """Why the run failed, as the injector said (``experiment.ended``'s ``reason``)."""
    log_lost: int = 0
    """Events the run's event log lost for good (``log.loss``)."""

    def apply(self, t: int, ev: RunEvent) -> None:
        if isinstance(ev, HypothesisProbeRan):
            started = t - int(ev.duration_s * 1e9)
            self.probes.append(
                ProbeCheck(
                    probe=ev.probe,
                    when=ev.when,
                    started_ns=started,
                    duration_s=ev.duration_s,
                    met=ev.tolerance_met,
                    reason="" if ev.tolerance_met else (ev.detail or "tolerance not met"),
                )
            )
        elif isinstance(ev, ExperimentAborted):
            if ev.cause == "safeguard" and ev.reason not in self.safeguards:
                self.safeguards.append(ev.reason)
            if self.aborted is None:
                self.aborted = ev.reason
        elif isinstance(ev, LogLoss):
            self.log_lost += ev.unrepaired
        else:
            self.status = ev.status
            self.failed_because = ev.reason if ev.status == "failed" else ""


def log_lost_reason(n: int) -> str:
    """The verdict's reason for ``n`` events the run's event log lost for good."""
    return f"the event log lost {n} events for good (the broker lost them)"


def recovery(targets: list[HealthKey]) -> list[TargetRecovery]:
    """Per target: its episodes, whether none was open at the end, and when the last ended."""
    out = []
    for hk in sorted(targets, key=lambda h: h.key):
        ended = [ep.ended_ns for ep in hk.episodes if ep.ended_ns is not None]
        recovered = hk.current is None
        out.append(
            TargetRecovery(
                target=hk.key,
                episodes=len(hk.episodes),
                recovered=recovered,
                recovered_ns=max(ended) if recovered and ended else None,
            )
        )
    return out


def run_reasons(
    checks: list[SloCheck],
    record: RunRecord,
    targets: list[TargetRecovery],
    origin_ns: int,
) -> list[str]:
    """Every failing part of a run verdict, in the order the outputs list them."""
    reasons = [c.reason or f"{c.name} failed" for c in checks if not c.passed]
    for p in record.probes:
        if not p.met:
            at = (p.started_ns - origin_ns) / 1e9
            reasons.append(
                f"steady-state probe {p.probe} ({p.when} the method, at {at:.1f} s) deviated: "
                f"{p.reason}"
            )
    reasons += [f"stopped by a safeguard: {s}" for s in record.safeguards]
    reasons += [
        f"{t.target} had not recovered when the run ended" for t in targets if not t.recovered
    ]
    if record.log_lost:
        reasons.append(log_lost_reason(record.log_lost))
    if record.status == "failed" and record.failed_because:
        reasons.append(f"run failed: {record.failed_because}")
    if record.status in ("aborted", "interrupted") and not record.safeguards:
        reasons.append(f"run {record.status}" + (f": {record.aborted}" if record.aborted else ""))
    return reasons


def settle(v: Verdict, status: str, note: str) -> Verdict:
    """The run verdict with what the game day itself recorded: how the run ended (``status``)
    and why (``note``: an interruption, a crashed system under test, analysis that had not
    caught up). A note fails the verdict; so does any status but ``completed``."""
    if v.phase:
        return v
    # The game day's own record of how the run ended wins over the one in the events (a
    # first Ctrl-C aborts the experiment; the run was interrupted).
    said = f"run {v.run_status}" if v.run_status else None
    reasons = [r for r in v.reasons if said is None or not r.startswith(said)]
    if note or status not in ("completed", "failed"):
        reasons.append(f"run {status}" + (f": {note}" if note else ""))
    interrupted = v.interrupted
    if status in ("interrupted", "aborted") and interrupted is None:
        interrupted = note or status
    return v.model_copy(
        update={
            "passed": v.passed and not reasons,
            "reasons": reasons,
            "run_status": status,
            "interrupted": interrupted,
        }
    )


def exit_code(v: Verdict | None) -> int:
    """0 passed; 1 failed; 2 no verdict (nothing was analysed) or the run was interrupted."""
    if v is None or v.run_status in ("interrupted", "error"):
        return 2
    return 0 if v.passed else 1


def run_verdict(
    ids: dict[str, object],
    checks: list[SloCheck],
    record: RunRecord,
    health: dict[tuple[str, str], HealthKey],
    origin_ns: int,
) -> Verdict:
    """The run verdict: SLO ``checks`` of the whole run, the run's own record, recovery."""
    targets = recovery([hk for (scope, _), hk in health.items() if scope == "target"])
    reasons = run_reasons(checks, record, targets, origin_ns)
    failed = [t for t in targets if t.episodes]
    all_recovered = None if not targets else all(t.recovered for t in targets)
    ends = [t.recovered_ns for t in failed if t.recovered_ns is not None]
    interrupted = None
    if record.status in ("aborted", "interrupted"):
        interrupted = record.aborted or record.status
    return Verdict.model_validate(
        {
            **ids,
            "phase": "",
            "passed": not reasons,
            "checks": checks,
            "hypothesis": record.probes,
            "safeguards": record.safeguards,
            "recovery": targets,
            "all_recovered": all_recovered,
            "recovered_ns": max(ends) if all_recovered and ends else None,
            "run_status": record.status,
            "interrupted": interrupted,
            "reasons": reasons,
        }
    )
