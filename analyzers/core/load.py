"""Latency and load per target, tenant and phase, and degradation against the baseline phase.

Each (scope, key, phase) has an accumulator with a :class:`LogHistogram` of round-trip
latencies (``session.receive.latency_ms``). Whole-run figures are the merge of the phase
accumulators, so they equal what one accumulator over everything would give. A phase runs from
its ``experiment.phase`` event to the next one (the last to the end of the stream); events
before the first phase belong to the unnamed phase ``""``, reported only in whole-run figures.
``error_ratio`` is errors / (errors + connects + receives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spine.sketch import LogHistogram

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable

QUANTILES = (0.5, 0.95, 0.99, 0.999)


@dataclass(slots=True)
class LoadAcc:
    sent: int = 0
    received: int = 0
    connects: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: LogHistogram = field(default_factory=LogHistogram)

    def merge(self, other: LoadAcc) -> None:
        self.sent += other.sent
        self.received += other.received
        self.connects += other.connects
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.latency.merge(other.latency)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_ratio(self) -> float:
        errors = self.error_count
        total = errors + self.connects + self.received
        return errors / total if total else 0.0


class Phases:
    """The phase timeline: names in start order."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, str]] = []
        self.current = ""

    def begin(self, t: int, name: str) -> None:
        self.starts.append((t, name))
        self.current = name

    def spans(self, first_ns: int, end_ns: int) -> dict[str, int]:
        """Duration (ns) of each phase; a phase entered twice adds up."""
        out: dict[str, int] = {}
        bounds = [(first_ns, ""), *self.starts]
        for i, (t, name) in enumerate(bounds):
            nxt = bounds[i + 1][0] if i + 1 < len(bounds) else end_ns
            out[name] = out.get(name, 0) + max(0, nxt - t)
        return out

    def intervals(self, name: str, end_ns: int) -> list[tuple[int, int]]:
        out = []
        for i, (t, n) in enumerate(self.starts):
            if n == name:
                nxt = self.starts[i + 1][0] if i + 1 < len(self.starts) else end_ns
                out.append((t, max(t, nxt)))
        return out


class LoadTracker:
    def __init__(self) -> None:
        self.phases = Phases()
        self.accs: dict[tuple[str, str, str], LoadAcc] = {}
        self._current: dict[Hashable, list[LoadAcc]] = {}

    def begin(self, t: int, phase: str) -> None:
        self.phases.begin(t, phase)
        self._current.clear()

    def accs_for(self, dims: Iterable[tuple[str, str]], key: Hashable) -> list[LoadAcc]:
        """The current phase's accumulators of ``dims``; ``key`` names that set of dims."""
        out = self._current.get(key)
        if out is not None:
            return out
        phase = self.phases.current
        out = []
        table = self.accs
        for scope, name in dims:
            k = (scope, name, phase)
            acc = table.get(k)
            if acc is None:
                table[k] = acc = LoadAcc()
            out.append(acc)
        self._current[key] = out
        return out

    def whole_run(self) -> dict[tuple[str, str], LoadAcc]:
        out: dict[tuple[str, str], LoadAcc] = {}
        for (scope, key, _), acc in sorted(self.accs.items()):
            total = out.get((scope, key))
            if total is None:
                out[(scope, key)] = total = LoadAcc()
            total.merge(acc)
        return out
