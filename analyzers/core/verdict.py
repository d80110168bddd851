"""Verdict: a phase (or the whole run) passes when every configured SLO check holds.

The steady-state hypothesis of a phase is the same set of checks applied to that phase's own
figures: availability over the phase, its p99 latency, its error ratio, isolation violations
seen in it, the MTTR of episodes that began in it and the p95 user-experienced recovery of
session outages that began in it. Loss is judged on the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.results import SloCheck

if TYPE_CHECKING:
    from analyzers.core.config import SloSpec


@dataclass(frozen=True)
class PhaseFigures:
    availability_pct: float
    p99_ms: float | None
    mttr_s: float | None
    isolation_violations: int
    error_ratio: float
    loss_ratio: float | None
    recovery_p95_s: float | None = None


def judge(slos: SloSpec, f: PhaseFigures) -> tuple[bool, list[SloCheck]]:
    checks: list[SloCheck] = []

    def at_most(name: str, observed: float | None, limit: float | None, unit: str) -> None:
        if limit is None:
            return
        if observed is None:
            checks.append(SloCheck(name=name, passed=True, threshold=limit, reason="no data"))
            return
        ok = observed <= limit
        reason = "" if ok else f"{name} {observed:g}{unit} exceeds {limit:g}{unit}"
        checks.append(
            SloCheck(name=name, passed=ok, observed=observed, threshold=limit, reason=reason)
        )

    if slos.availability_min_pct is not None:
        ok = f.availability_pct >= slos.availability_min_pct
        checks.append(
            SloCheck(
                name="availability",
                passed=ok,
                observed=f.availability_pct,
                threshold=slos.availability_min_pct,
                reason=""
                if ok
                else f"availability {f.availability_pct:.3f}% below {slos.availability_min_pct:g}%",
            )
        )
    at_most("p99_latency", f.p99_ms, slos.p99_max_ms, " ms")
    at_most("mttr", f.mttr_s, slos.mttr_max_s, " s")
    at_most(
        "isolation_violations",
        float(f.isolation_violations),
        None if slos.max_isolation_violations is None else float(slos.max_isolation_violations),
        "",
    )
    at_most("error_ratio", f.error_ratio, slos.max_error_ratio, "")
    at_most("loss_ratio", f.loss_ratio, slos.max_loss_ratio, "")
    at_most("recovery_p95", f.recovery_p95_s, slos.recovery_p95_max_s, " s")
    return all(c.passed for c in checks), checks
