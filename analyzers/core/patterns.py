"""Failure patterns: error bursts clustered in time, and error classes per fault type.

A **burst** is a run of ``session.error`` events on one target in which no two consecutive
errors are more than ``burst_gap_s`` apart, with at least ``burst_min_errors`` errors. The
**fingerprint** of a fault type (toxic type, or ``proxy_disabled``) counts the error classes
of every error observed while a fault of that type was active.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzers.core.faults import FaultWindow


@dataclass
class Burst:
    target: str
    index: int
    started_ns: int
    ended_ns: int
    errors: int
    error_classes: dict[str, int]
    faults_active: list[str]


@dataclass
class Fingerprint:
    faults: list[str] = field(default_factory=list)
    errors: int = 0
    error_classes: dict[str, int] = field(default_factory=dict)


class PatternTracker:
    def __init__(self, gap_ns: int, min_errors: int) -> None:
        self._gap_ns = gap_ns
        self._min = min_errors
        self._open: dict[str, Burst] = {}
        self._counter: dict[str, int] = {}
        self.bursts: list[Burst] = []
        self.fingerprints: dict[str, Fingerprint] = {}

    def error(
        self, t: int, target: str, error_class: str, active: list[FaultWindow], faults: list[str]
    ) -> None:
        b = self._open.get(target)
        if b is not None and t - b.ended_ns > self._gap_ns:
            self._close(b)
            b = None
        if b is None:
            idx = self._counter.get(target, 0) + 1
            self._counter[target] = idx
            b = Burst(target, idx, t, t, 0, {}, list(faults))
            self._open[target] = b
        if t > b.ended_ns:  # a late error lies inside the burst, it does not end it
            b.ended_ns = t
        elif t < b.started_ns:
            b.started_ns = t
        b.errors += 1
        b.error_classes[error_class] = b.error_classes.get(error_class, 0) + 1
        for w in active:
            fp = self.fingerprints.get(w.fault_type)
            if fp is None:
                self.fingerprints[w.fault_type] = fp = Fingerprint()
            if w.fault_id not in fp.faults:
                fp.faults.append(w.fault_id)
            fp.errors += 1
            fp.error_classes[error_class] = fp.error_classes.get(error_class, 0) + 1

    def advance(self, t: int) -> None:
        for target, b in list(self._open.items()):
            if t - b.ended_ns > self._gap_ns:
                del self._open[target]
                self._close(b)

    def _close(self, b: Burst) -> None:
        self._open.pop(b.target, None)
        if b.errors >= self._min:
            self.bursts.append(b)
        else:
            self._counter[b.target] -= 1

    def all_bursts(self) -> list[Burst]:
        """Closed bursts plus any open run already long enough to be one."""
        open_ = [b for b in self._open.values() if b.errors >= self._min]
        return sorted([*self.bursts, *open_], key=lambda b: (b.started_ns, b.target))
