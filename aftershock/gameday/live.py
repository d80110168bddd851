"""What a running game day looks like right now, for the dashboard: the analyzers' latest
``result.live`` record (:mod:`analyzers.core.series`) under the run's title and wall clock.

Nothing is counted here: every figure is the analyzers', so the last snapshot of a run says
what its report says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.results import LiveFigures

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from schemas.results import ResultEvent


@dataclass(frozen=True)
class LiveSnapshot:
    title: str
    experiment_id: str
    run_id: str
    elapsed_s: float
    planned_s: float
    phase: str
    active_faults: tuple[str, ...]
    sessions: int | None
    """Connected sessions; None before the analyzers reported anything."""
    throughput_per_s: float
    error_rate_pct: float
    p99_ms: float | None
    open_episodes: tuple[str, ...]
    episodes: int
    mttr_s: float | None
    isolation_violations: int
    events: int

    @property
    def progress(self) -> float:
        return 0.0 if self.planned_s <= 0 else min(1.0, self.elapsed_s / self.planned_s)

    @classmethod
    def of(
        cls,
        figures: LiveFigures | None,
        *,
        title: str,
        experiment_id: str,
        run_id: str,
        elapsed_s: float,
        planned_s: float,
        phase: str = "starting",
    ) -> LiveSnapshot:
        f = figures
        return cls(
            title=title,
            experiment_id=experiment_id,
            run_id=run_id,
            elapsed_s=elapsed_s,
            planned_s=planned_s,
            phase=(f.current_phase or phase) if f else phase,
            active_faults=tuple(f.active_faults) if f else (),
            sessions=f.sessions if f else None,
            throughput_per_s=f.throughput_per_s if f else 0.0,
            error_rate_pct=f.error_rate_pct if f else 0.0,
            p99_ms=f.p99_ms if f else None,
            open_episodes=tuple(f.open_episodes) if f else (),
            episodes=f.episodes if f else 0,
            mttr_s=f.mttr_s if f else None,
            isolation_violations=f.isolation_violations if f else 0,
            events=f.events if f else 0,
        )


def live_figures(results: Sequence[ResultEvent]) -> LiveFigures | None:
    for r in results:
        if isinstance(r, LiveFigures):
            return r
    return None


class LiveTap:
    """Holds the analyzers' latest results (:meth:`update_results`); :meth:`snapshot` puts
    their ``result.live`` record under the run's title and elapsed wall-clock time."""

    def __init__(
        self,
        *,
        title: str,
        experiment_id: str,
        run_id: str,
        planned_s: float,
        now_s: Callable[[], float],
    ) -> None:
        self.title, self.experiment_id, self.run_id = title, experiment_id, run_id
        self.planned_s = planned_s
        self._now_s = now_s
        self._t0 = now_s()
        self._figures: LiveFigures | None = None

    def update_results(self, results: Sequence[ResultEvent]) -> None:
        figures = live_figures(results)
        if figures is not None:
            self._figures = figures

    def snapshot(self) -> LiveSnapshot:
        return LiveSnapshot.of(
            self._figures,
            title=self.title,
            experiment_id=self.experiment_id,
            run_id=self.run_id,
            elapsed_s=self._now_s() - self._t0,
            planned_s=self.planned_s,
        )
