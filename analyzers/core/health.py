"""Health timelines and failure episodes, as clients saw them.

Every session event is an observation of a health key — its target, its tenant, and the
whole system — at its event time: ``ok`` or failed with an error class. A key is a state
machine UP → DOWN → RECOVERING → UP (a relapse goes RECOVERING → DOWN); the thresholds are
:class:`analyzers.core.config.HealthThresholds`. A failure **episode** begins at the earliest
failed observation inside the window that tripped DOWN and ends at the first successful
observation of the recovery that held. MTTR is the mean duration of ended episodes (their
median and maximum are reported beside it); MTBF is the observed up time divided by the number
of episodes; availability is up time over observed time, observed time running from the key's
first to its last observation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzers.core.config import HealthThresholds


class Health(StrEnum):
    UP = "up"
    DOWN = "down"
    RECOVERING = "recovering"


_TRANSITIONS = {
    Health.UP: {Health.DOWN},
    Health.DOWN: {Health.RECOVERING},
    Health.RECOVERING: {Health.UP, Health.DOWN},
}


@dataclass
class Episode:
    scope: str
    key: str
    index: int
    started_ns: int
    faults_active: list[str]
    ended_ns: int | None = None
    error_classes: dict[str, int] = field(default_factory=dict)
    relapses: int = 0
    faults_after: list[str] = field(default_factory=list)
    """Faults that had ended shortly before it began (its cause, as their after-effect)."""

    @property
    def faults(self) -> list[str]:
        """Every fault it is attributed to: active when it began, then after-effects."""
        return [*self.faults_active, *self.faults_after]

    @property
    def episode_id(self) -> str:
        return f"{self.scope}:{self.key}:{self.index}"


class HealthKey:
    """The health state machine of one key."""

    def __init__(self, scope: str, key: str, th: HealthThresholds) -> None:
        self.scope = scope
        self.key = key
        self._window_ns = int(th.window_s * 1e9)
        self._min_failures = th.min_failures
        self._ratio = th.fail_ratio
        self._hold_ns = int(th.recover_hold_s * 1e9)
        self.state = Health.UP
        self._window: deque[tuple[int, str | None]] = deque()
        self._fails = 0
        self._rec_start = 0
        self._rec_fails = 0
        self._rec_total = 0
        self.first_ns: int | None = None
        self.last_ns = 0
        self.episodes: list[Episode] = []
        self.current: Episode | None = None

    def _move(self, to: Health) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"health {self.scope}:{self.key}: bad transition {self.state}->{to}")
        self.state = to

    def observe(self, t: int, error_class: str | None, faults_at: FaultLookup) -> Episode | None:
        """Fold one observation (``error_class`` None: success); returns a new episode."""
        ok = error_class is None
        if self.first_ns is None:
            self.first_ns = t
        if t > self.last_ns:
            self.last_ns = t
        else:
            t = self.last_ns  # a late observation counts as seen now: the timeline only grows
        window = self._window
        window.append((t, error_class))
        if not ok:
            self._fails += 1
        horizon = t - self._window_ns
        while window[0][0] <= horizon:
            if window.popleft()[1] is not None:
                self._fails -= 1
        state = self.state
        if state is Health.RECOVERING and t - self._rec_start >= self._hold_ns:
            self._close()
            state = Health.UP
        if state is Health.UP:
            if (
                not ok
                and self._fails >= self._min_failures
                and self._fails >= self._ratio * len(window)
            ):
                return self._open(faults_at)
            return None
        ep = self.current
        assert ep is not None
        if error_class is not None:
            ep.error_classes[error_class] = ep.error_classes.get(error_class, 0) + 1
        if state is Health.DOWN:
            if ok:
                self._move(Health.RECOVERING)
                self._rec_start = t
                self._rec_fails = 0
                self._rec_total = 1
            return None
        self._rec_total += 1
        if not ok:
            self._rec_fails += 1
            if (
                self._rec_fails >= self._min_failures
                and self._rec_fails >= self._ratio * self._rec_total
            ):
                self._move(Health.DOWN)
                ep.relapses += 1
        return None

    def observe_ok(self, t: int) -> None:
        """:meth:`observe` of a success while the key is UP, which can neither open nor
        close an episode: only the timeline and the window move."""
        if self.first_ns is None:
            self.first_ns = t
        if t > self.last_ns:
            self.last_ns = t
        else:
            t = self.last_ns
        window = self._window
        window.append((t, None))
        horizon = t - self._window_ns
        while window[0][0] <= horizon:
            if window.popleft()[1] is not None:
                self._fails -= 1

    def advance(self, t: int) -> None:
        """Event time reached ``t`` with every earlier observation folded."""
        if self.state is Health.RECOVERING and t - self._rec_start >= self._hold_ns:
            self._close()

    def finish(self) -> None:
        """End of stream: a recovery in progress counts as recovered when it began."""
        if self.state is Health.RECOVERING:
            self._close()

    def _open(self, faults_at: FaultLookup) -> Episode:
        start = next(t for t, cls in self._window if cls is not None)
        if self.episodes and self.episodes[-1].ended_ns is not None:
            start = max(start, self.episodes[-1].ended_ns)
        self._move(Health.DOWN)
        ep = Episode(self.scope, self.key, len(self.episodes) + 1, start, faults_at(start))
        for t, cls in self._window:
            if cls is not None and t >= start:
                ep.error_classes[cls] = ep.error_classes.get(cls, 0) + 1
        self.episodes.append(ep)
        self.current = ep
        return ep

    def _close(self) -> None:
        self._move(Health.UP)
        assert self.current is not None
        self.current.ended_ns = self._rec_start
        self.current = None

    def figures(self, end_ns: int | None = None) -> Figures:
        """Availability, MTBF, MTTR over the observed span (to ``end_ns`` if later)."""
        first = self.first_ns if self.first_ns is not None else 0
        last = max(self.last_ns, end_ns or 0, first)
        observed = last - first
        down = 0
        durations: list[int] = []
        for ep in self.episodes:
            end = ep.ended_ns if ep.ended_ns is not None else last
            down += max(0, min(end, last) - max(ep.started_ns, first))
            if ep.ended_ns is not None:
                durations.append(ep.ended_ns - ep.started_ns)
        up = observed - down
        n = len(self.episodes)
        durations.sort()
        return Figures(
            observed_s=observed / 1e9,
            downtime_s=down / 1e9,
            availability_pct=100.0 if observed == 0 else 100.0 * up / observed,
            episodes=n,
            mtbf_s=(up / 1e9 / n) if n else None,
            mttr_s=(sum(durations) / len(durations) / 1e9) if durations else None,
            episode_median_s=_median(durations) / 1e9 if durations else None,
            episode_max_s=durations[-1] / 1e9 if durations else None,
        )


def _median(sorted_values: list[int]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return float(sorted_values[mid]) if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


@dataclass(frozen=True)
class Figures:
    observed_s: float
    downtime_s: float
    availability_pct: float
    episodes: int
    mtbf_s: float | None
    mttr_s: float | None
    episode_median_s: float | None
    episode_max_s: float | None


if TYPE_CHECKING:
    from collections.abc import Callable

    FaultLookup = Callable[[int], list[str]]
