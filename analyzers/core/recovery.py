"""User-experienced recovery: how long each session was without service, as it lived it.

Per session (its whole identity: run, generator, target, name), a **recovery** runs from its
first failed observation (see :mod:`analyzers.core.health` for what an observation is) to its
first successful observation after that. Each recovery counts for the session's target, its
tenant, ``overall``, and every fault active — or ended within ``after_effect_s`` — when it
began. A session still failing at the end of the stream is **unrecovered**. Quantiles are exact
(nearest rank over every recovery), not sketched: there is one recovery per session outage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzers.core.integrity import Dim, SessionKey


@dataclass(slots=True)
class Recoveries:
    began_ns: list[int] = field(default_factory=list)
    """When each recovery's first failure happened, with ``durations_ns`` in the same order."""
    durations_ns: list[int] = field(default_factory=list)


def nearest_rank(sorted_values: list[int], q: float) -> int:
    """The smallest value with at least ``q`` of the values at or below it."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class RecoveryTracker:
    def __init__(self) -> None:
        self._failing: dict[SessionKey, tuple[int, tuple[Dim, ...]]] = {}
        self.by_dim: dict[Dim, Recoveries] = {}

    @property
    def any_failing(self) -> bool:
        """Whether any session's recovery is running (else a success ends none)."""
        return bool(self._failing)

    def failing(self, session: SessionKey) -> bool:
        return session in self._failing

    def failed(self, t: int, session: SessionKey, dims: tuple[Dim, ...]) -> None:
        """A failed observation of a session that was not failing: its recovery begins."""
        self._failing.setdefault(session, (t, dims))

    def succeeded(self, t: int, session: SessionKey) -> None:
        """A successful observation: ends the session's recovery, if one was running."""
        began = self._failing.pop(session, None)
        if began is None:
            return
        start, dims = began
        duration = max(0, t - start)  # a late observation never gives a negative time
        for d in dims:
            r = self.by_dim.get(d)
            if r is None:
                self.by_dim[d] = r = Recoveries()
            r.began_ns.append(start)
            r.durations_ns.append(duration)

    def unrecovered(self) -> dict[Dim, int]:
        """Sessions still failing, per dimension."""
        out: dict[Dim, int] = {}
        for _, dims in self._failing.values():
            for d in dims:
                out[d] = out.get(d, 0) + 1
        return out
