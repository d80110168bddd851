"""What a running game day looks like right now: a tap on the event stream plus the latest
result records, folded into one immutable :class:`LiveSnapshot` for the dashboard."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aftershock.report.series import quantile
from schemas.events import (
    Connected,
    Disconnect,
    ExperimentPhase,
    ProxyDisabled,
    ProxyEnabled,
    Receive,
    Send,
    SessionError,
    ToxicAdded,
    ToxicRemoved,
)
from schemas.results import Availability, FailureEpisode, IsolationViolation

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from schemas.events import Event
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
    """Connected sessions; None when unknown (snapshot built from results only)."""
    throughput_per_s: float
    error_rate_pct: float
    p99_ms: float | None
    open_episodes: tuple[str, ...]
    mttr_s: float | None
    isolation_violations: int
    events: int

    @property
    def progress(self) -> float:
        return 0.0 if self.planned_s <= 0 else min(1.0, self.elapsed_s / self.planned_s)


@dataclass
class _Second:
    sent: int = 0
    received: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class LiveTap:
    """Fed every event of the run (:meth:`observe`) and the analyzer's latest results
    (:meth:`update_results`); :meth:`snapshot` folds them with a rolling window of
    ``window_s`` seconds for rates and p99."""

    def __init__(
        self,
        *,
        title: str,
        experiment_id: str,
        run_id: str,
        planned_s: float,
        now_s: Callable[[], float],
        window_s: int = 5,
    ) -> None:
        self.title, self.experiment_id, self.run_id = title, experiment_id, run_id
        self.planned_s = planned_s
        self._now_s = now_s
        self._t0 = now_s()
        self._window_s = window_s
        self._seconds: deque[tuple[int, _Second]] = deque()
        self._faults: dict[tuple[str, str], str] = {}
        self._sessions: set[str] = set()
        self._phase = "starting"
        self._events = 0
        self._results: Sequence[ResultEvent] = ()

    def _second(self) -> _Second:
        sec = int(self._now_s())
        if not self._seconds or self._seconds[-1][0] != sec:
            self._seconds.append((sec, _Second()))
            while self._seconds and self._seconds[0][0] <= sec - self._window_s - 1:
                self._seconds.popleft()
        return self._seconds[-1][1]

    def observe(self, ev: Event) -> None:
        self._events += 1
        if isinstance(ev, Send):
            self._second().sent += 1
        elif isinstance(ev, Receive):
            s = self._second()
            s.received += 1
            if ev.latency_ms is not None and len(s.latencies) < 5000:
                s.latencies.append(ev.latency_ms)
        elif isinstance(ev, SessionError):
            self._second().errors += 1
        elif isinstance(ev, Connected):
            self._sessions.add(f"{ev.tenant}/{ev.session}")
        elif isinstance(ev, Disconnect):
            self._sessions.discard(f"{ev.tenant}/{ev.session}")
            if ev.by == "error":
                self._second().errors += 1
        elif isinstance(ev, ExperimentPhase):
            self._phase = ev.phase
        elif isinstance(ev, ToxicAdded):
            self._faults[(ev.proxy, ev.toxic.name)] = ev.fault_id or ev.toxic.name
        elif isinstance(ev, ToxicRemoved):
            self._faults.pop((ev.proxy, ev.toxic_name), None)
        elif isinstance(ev, ProxyDisabled):
            self._faults[(ev.proxy, "")] = ev.fault_id or f"{ev.proxy} down"
        elif isinstance(ev, ProxyEnabled):
            self._faults.pop((ev.proxy, ""), None)

    def update_results(self, results: Sequence[ResultEvent]) -> None:
        self._results = results

    def snapshot(self) -> LiveSnapshot:
        now = self._now_s()
        current = int(now)
        full = [s for sec, s in self._seconds if current - self._window_s <= sec < current]
        span = max(1, len(full))
        sent = sum(s.sent for s in full)
        received = sum(s.received for s in full)
        errors = sum(s.errors for s in full)
        lat = sorted(x for s in full for x in s.latencies)
        episodes = [r for r in self._results if isinstance(r, FailureEpisode)]
        overall = [r for r in self._results if isinstance(r, Availability) and r.scope == "overall"]
        return LiveSnapshot(
            title=self.title,
            experiment_id=self.experiment_id,
            run_id=self.run_id,
            elapsed_s=now - self._t0,
            planned_s=self.planned_s,
            phase=self._phase,
            active_faults=tuple(sorted(set(self._faults.values()))),
            sessions=len(self._sessions),
            throughput_per_s=received / span,
            error_rate_pct=0.0 if sent + errors == 0 else 100.0 * errors / (sent + errors),
            p99_ms=quantile(lat, 0.99),
            open_episodes=tuple(
                sorted(
                    f"{e.scope}:{e.scope_key}" if e.scope_key else e.scope
                    for e in episodes
                    if e.ended_ns is None
                )
            ),
            mttr_s=overall[0].mttr_s if overall else None,
            isolation_violations=sum(isinstance(r, IsolationViolation) for r in self._results),
            events=self._events,
        )
