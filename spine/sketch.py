"""A mergeable quantile sketch: log-spaced buckets with a bounded relative error.

Each positive value ``v`` falls in bucket ``ceil(log(v) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``; a quantile is answered by the bucket holding that rank, at the
bucket's midpoint, so it is within relative error ``a`` of a true sample value. Two sketches
merge by adding bucket counts, which is exact, associative and commutative: partitions and
workers can be combined in any order and give the same answer as one sketch over everything.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import mul
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_RELATIVE_ACCURACY = 0.01
_MIN_VALUE = 1e-6


@dataclass
class LogHistogram:
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    counts: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def __post_init__(self) -> None:
        if not 0 < self.relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {self.relative_accuracy}")
        self._gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)

    def add(self, value: float) -> None:
        if not 0 <= value < math.inf:
            raise ValueError(f"sketch values must be finite and >= 0, got {value}")
        if value < _MIN_VALUE:
            self._add_at(None, value)
        else:
            self._add_at(math.ceil(math.log(value) * self._inv_log_gamma), value)

    def add_many(self, values: Sequence[float]) -> None:
        """:meth:`add` of every value, the same buckets, with the per-value work done in C
        (``map`` and ``Counter``): for callers folding thousands of values a second."""
        if not values:
            return
        low, high, total = min(values), max(values), math.fsum(values)
        if not (low >= 0 and math.isfinite(total)):
            bad = next(v for v in values if not 0 <= v < math.inf)
            raise ValueError(f"sketch values must be finite and >= 0, got {bad}")
        positive = values if low >= _MIN_VALUE else [v for v in values if v >= _MIN_VALUE]
        buckets = Counter(
            map(math.ceil, map(mul, map(math.log, positive), repeat(self._inv_log_gamma)))
        )
        self.merge(
            LogHistogram(
                self.relative_accuracy,
                counts=dict(buckets),
                zero_count=len(values) - len(positive),
                count=len(values),
                total=total,
                min=low,
                max=high,
            )
        )

    def _add_at(self, i: int | None, value: float) -> None:
        """:meth:`add` for a value already checked, whose bucket is ``i`` (None: the bucket
        of values too small for a logarithm)."""
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if i is None:
            self.zero_count += 1
            return
        counts = self.counts
        counts[i] = counts.get(i, 0) + 1

    def merge(self, other: LogHistogram) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different relative accuracy")
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.zero_count += other.zero_count
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), or None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        if rank < self.zero_count:
            return 0.0
        seen = self.zero_count
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen > rank:
                value = 2 * self._gamma**i / (self._gamma + 1)
                return min(max(value, self.min), self.max)
        return self.max

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        """Several quantiles in one pass over the sorted buckets."""
        if self.count == 0:
            return [None] * len(qs)
        keys = sorted(self.counts)
        out: list[float | None] = []
        for q in qs:
            rank = q * (self.count - 1)
            if rank < self.zero_count:
                out.append(0.0)
                continue
            seen = self.zero_count
            value = self.max
            for i in keys:
                seen += self.counts[i]
                if seen > rank:
                    value = min(max(2 * self._gamma**i / (self._gamma + 1), self.min), self.max)
                    break
            out.append(value)
        return out


def add_to_each(sketches: list[LogHistogram], value: float) -> None:
    """``value`` added to every sketch; the bucket is computed once for sketches of the same
    accuracy as the first (the usual case: one value counted per target, tenant and overall)."""
    if not sketches:
        return
    first = sketches[0]
    if not _MIN_VALUE <= value < math.inf:
        for s in sketches:
            s.add(value)
        return
    inv = first._inv_log_gamma
    i = math.ceil(math.log(value) * inv)
    for s in sketches:
        if s._inv_log_gamma == inv:  # _add_at(i, value), inlined: once per sketch and value
            s.count += 1
            s.total += value
            if value < s.min:
                s.min = value
            if value > s.max:
                s.max = value
            counts = s.counts
            counts[i] = counts.get(i, 0) + 1
        else:
            s.add(value)
