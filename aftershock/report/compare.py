"""A run set against a baseline run: the same figures side by side, worse ones flagged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aftershock.report.model import Findings

if TYPE_CHECKING:
    from aftershock.report.model import RunData


@dataclass(frozen=True)
class Row:
    metric: str
    current: float | None
    baseline: float | None
    unit: str = ""
    higher_is_better: bool = False

    @property
    def delta(self) -> float | None:
        if self.current is None or self.baseline is None:
            return None
        return self.current - self.baseline

    @property
    def worse(self) -> bool | None:
        d = self.delta
        if d is None or abs(d) < 1e-9:
            return None
        return d < 0 if self.higher_is_better else d > 0


@dataclass(frozen=True)
class Comparison:
    baseline_run_id: str
    baseline_passed: bool | None
    rows: list[Row]


def _totals(f: Findings) -> tuple[int, int]:
    b = f.series.buckets
    return sum(x.received for x in b), sum(x.errors for x in b)


def compare(current: RunData, baseline: RunData) -> Comparison:
    cur, base = Findings(current.records()), Findings(baseline.records())
    rows: list[Row] = []
    targets = sorted(
        {a.scope_key for a in cur.availability + base.availability if a.scope == "target"}
    )
    for t in targets:
        ca, ba = cur.availability_of("target", t), base.availability_of("target", t)
        rows.append(
            Row(
                f"{t}: availability",
                None if ca is None else ca.availability_pct,
                None if ba is None else ba.availability_pct,
                " %",
                higher_is_better=True,
            )
        )
        rows.append(
            Row(
                f"{t}: MTTR",
                None if ca is None else ca.mttr_s,
                None if ba is None else ba.mttr_s,
                " s",
            )
        )
        rows.append(
            Row(
                f"{t}: failure episodes",
                None if ca is None else float(ca.episodes),
                None if ba is None else float(ba.episodes),
            )
        )
    cl, bl = cur.overall_latency(), base.overall_latency()
    rows.append(
        Row(
            "p99 latency",
            None if cl is None else cl.p99_ms,
            None if bl is None else bl.p99_ms,
            " ms",
        )
    )
    rows.append(
        Row("isolation violations", float(cur.violation_count), float(base.violation_count))
    )
    ci, bi = cur.overall_integrity(), base.overall_integrity()
    for name in ("lost", "corrupted", "duplicated", "reordered"):
        rows.append(
            Row(
                f"messages {name}",
                None if ci is None else float(getattr(ci, name)),
                None if bi is None else float(getattr(bi, name)),
            )
        )
    (c_recv, c_err), (b_recv, b_err) = _totals(cur), _totals(base)
    rows.append(Row("messages received", float(c_recv), float(b_recv), higher_is_better=True))
    rows.append(Row("client errors", float(c_err), float(b_err)))
    return Comparison(baseline.meta.run_id, base.passed, rows)
