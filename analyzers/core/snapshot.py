"""The time series and the dashboard's figures as result records (``result.series``,
``result.live``), built from the analyzer's state like every other record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers.core.series import LIVE_WINDOW_S, series_windows
from schemas.results import LiveFigures, TimeSeries

if TYPE_CHECKING:
    from analyzers.core.engine import Analyzer
    from schemas.results import ResultEvent


def origin_of(a: Analyzer) -> int:
    """Time zero of every "seconds from start" figure: ``experiment.started``, else the
    first event (clock-corrected event time)."""
    if a.started_ns is not None:
        return a.started_ns
    return a.first_ns if a.first_ns is not None else 0


def series_results(
    a: Analyzer, series_ids: dict[str, object], live_ids: dict[str, object]
) -> list[ResultEvent]:
    """The two records; ``*_ids``: their identity fields (one record of each per run)."""
    origin = origin_of(a)
    series = a.series
    recent = series.recent(a.last_ns, LIVE_WINDOW_S)
    overall = a.health_keys().get(("overall", ""))
    figures = overall.figures() if overall is not None else None
    open_eps = sorted(
        f"{scope}:{key}"
        for (scope, key), hk in a.health_keys().items()
        if scope == "target" and hk.current is not None
    )
    stats = a.stats()
    return [
        TimeSeries.model_validate(
            {
                **series_ids,
                "origin_ns": origin,
                "bucket_s": series.bucket_s,
                "buckets": series.buckets(origin),
                "windows": series_windows(a.faults, origin),
            }
        ),
        LiveFigures.model_validate(
            {
                **live_ids,
                "at_s": max(0.0, (a.last_ns - origin) / 1e9) if a.first_ns is not None else 0.0,
                "window_s": LIVE_WINDOW_S,
                "current_phase": a.load.phases.current,
                "active_faults": sorted(
                    {w.fault_id for w in a.faults.windows if w.ended_ns is None}
                ),
                "sessions": series.sessions,
                "throughput_per_s": recent.throughput_per_s,
                "error_rate_pct": recent.error_rate_pct,
                "p99_ms": recent.p99_ms,
                "open_episodes": open_eps,
                "episodes": figures.episodes if figures else 0,
                "mttr_s": figures.mttr_s if figures else None,
                "isolation_violations": len(a.isolation.seen),
                # every event folded: released in order, or late and folded on arrival
                "events": stats.released + stats.late,
            }
        ),
    ]
