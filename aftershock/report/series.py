"""A fold over a run's events giving the report's time series and fault windows.

Client-side figures per time bucket (messages sent and received, errors, connects, latency
quantiles) and, per fault, the window in which it was in force. Fault windows follow the
analyzers' rule: per (proxy, toxic name), from the first add/disable to the first
remove/enable seen from any source, so the injector's and the proxy's copies of one change
count once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aftershock.report.model import Bucket, FaultWindow, TimeSeries
from schemas.events import (
    Connected,
    Disconnect,
    ExperimentStarted,
    ProxyDeleted,
    ProxyDisabled,
    ProxyEnabled,
    Receive,
    Send,
    SessionError,
    ToxicAdded,
    ToxicRemoved,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from schemas.events import Event

SAMPLES_PER_BUCKET = 2000
"""Latency samples kept per bucket (reservoir), which bounds memory on long runs."""

_FaultChange = ToxicAdded | ToxicRemoved | ProxyDisabled | ProxyEnabled | ProxyDeleted


@dataclass
class _Acc:
    sent: int = 0
    received: int = 0
    errors: int = 0
    connects: int = 0
    seen: int = 0
    samples: list[float] = field(default_factory=list)


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


class SeriesBuilder:
    """Feed events in any order with :meth:`add`; :meth:`build` gives the series."""

    def __init__(self, bucket_s: float = 1.0, *, seed: int = 0) -> None:
        if bucket_s <= 0:
            raise ValueError(f"bucket_s must be positive, got {bucket_s}")
        self.bucket_s = bucket_s
        self._bucket_ns = int(bucket_s * 1e9)
        self._acc: dict[int, _Acc] = {}
        self._faults: list[_FaultChange] = []
        self._started_ns: int | None = None
        self._first_ns: int | None = None
        self._rng = random.Random(seed)

    def add_all(self, events: Iterable[Event]) -> SeriesBuilder:
        for ev in events:
            self.add(ev)
        return self

    def add(self, ev: Event) -> None:
        if self._first_ns is None or ev.ts_ns < self._first_ns:
            self._first_ns = ev.ts_ns
        if isinstance(ev, ExperimentStarted):
            if self._started_ns is None or ev.ts_ns < self._started_ns:
                self._started_ns = ev.ts_ns
            return
        if isinstance(ev, ToxicAdded | ToxicRemoved | ProxyDisabled | ProxyEnabled | ProxyDeleted):
            self._faults.append(ev)
            return
        if not isinstance(ev, Send | Receive | SessionError | Connected | Disconnect):
            return
        acc = self._acc.setdefault(ev.ts_ns // self._bucket_ns, _Acc())
        if isinstance(ev, Send):
            acc.sent += 1
        elif isinstance(ev, Receive):
            acc.received += 1
            if ev.latency_ms is not None:
                self._sample(acc, ev.latency_ms)
        elif isinstance(ev, SessionError):
            acc.errors += 1
        elif isinstance(ev, Connected):
            acc.connects += 1
        elif ev.by == "error":
            acc.errors += 1

    def _sample(self, acc: _Acc, value: float) -> None:
        acc.seen += 1
        if len(acc.samples) < SAMPLES_PER_BUCKET:
            acc.samples.append(value)
        else:
            j = self._rng.randrange(acc.seen)
            if j < SAMPLES_PER_BUCKET:
                acc.samples[j] = value

    @property
    def origin_ns(self) -> int:
        if self._started_ns is not None:
            return self._started_ns
        return self._first_ns or 0

    def build(self) -> TimeSeries:
        origin = self.origin_ns
        buckets: list[Bucket] = []
        if self._acc:
            lo, hi = min(self._acc), max(self._acc)
            for idx in range(lo, hi + 1):
                acc = self._acc.get(idx, _Acc())
                ordered = sorted(acc.samples)
                buckets.append(
                    Bucket(
                        start_s=round(max(0.0, (idx * self._bucket_ns - origin) / 1e9), 6),
                        sent=acc.sent,
                        received=acc.received,
                        errors=acc.errors,
                        connects=acc.connects,
                        p50_ms=quantile(ordered, 0.50),
                        p99_ms=quantile(ordered, 0.99),
                    )
                )
        return TimeSeries(
            origin_ns=origin,
            bucket_s=self.bucket_s,
            buckets=buckets,
            windows=fault_windows(self._faults, origin),
        )


def fault_windows(changes: Iterable[Event], origin_ns: int) -> list[FaultWindow]:
    """Fault windows of the given fault events, ordered by start."""
    opened: dict[tuple[str, str], tuple[int, str, str]] = {}
    labels: dict[tuple[str, str], str] = {}
    out: list[tuple[int, FaultWindow]] = []

    def close(key: tuple[str, str], end_ns: int | None) -> None:
        start_ns, ftype, label = opened.pop(key)
        out.append(
            (
                start_ns,
                FaultWindow(
                    label=labels.get(key, label),
                    proxy=key[0],
                    fault_type=ftype,
                    start_s=max(0.0, (start_ns - origin_ns) / 1e9),
                    end_s=None if end_ns is None else max(0.0, (end_ns - origin_ns) / 1e9),
                ),
            )
        )

    for ev in sorted(changes, key=lambda e: e.ts_ns):
        if isinstance(ev, ToxicAdded):
            key = (ev.proxy, ev.toxic.name)
            if ev.fault_id:
                labels[key] = ev.fault_id
            if key not in opened:
                opened[key] = (ev.ts_ns, ev.toxic.type, ev.toxic.name)
        elif isinstance(ev, ProxyDisabled):
            key = (ev.proxy, "")
            if ev.fault_id:
                labels[key] = ev.fault_id
            if key not in opened:
                opened[key] = (ev.ts_ns, "down", f"{ev.proxy} down")
        elif isinstance(ev, ToxicRemoved):
            key = (ev.proxy, ev.toxic_name)
            if key in opened:
                close(key, ev.ts_ns)
        elif isinstance(ev, ProxyEnabled):
            key = (ev.proxy, "")
            if key in opened:
                close(key, ev.ts_ns)
        elif isinstance(ev, ProxyDeleted):
            for key in [k for k in opened if k[0] == ev.proxy]:
                close(key, ev.ts_ns)
    for key in list(opened):
        close(key, None)
    return [w for _, w in sorted(out, key=lambda x: (x[0], x[1].label))]
