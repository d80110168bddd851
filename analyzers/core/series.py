"""The run as a time series, and what the dashboard shows: folds of the analyzer's own events.

:class:`SeriesFold` is fed by :class:`analyzers.core.engine.Analyzer` with each session event,
in clock-corrected event-time order, together with the failure class the analyzer gave it
(:func:`analyzers.core.engine.failure_class`), so a bucket's ``errors`` are the failures the
availability and load figures count. Fault windows are the analyzer's own
(:class:`analyzers.core.faults.FaultWindows`). Latency quantiles per bucket come from the
same sketch as the latency summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analyzers.core.events import Connected, Disconnect, Receive
from schemas.results import SeriesBucket, SeriesWindow
from spine.sketch import LogHistogram

if TYPE_CHECKING:
    from analyzers.core.events import SessionError
    from analyzers.core.faults import FaultWindows

LIVE_WINDOW_S = 5.0
"""The dashboard's rates and p99 are over this many seconds of complete buckets."""


@dataclass(slots=True)
class _Bucket:
    sent: int = 0
    received: int = 0
    errors: int = 0
    connects: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)


class SeriesFold:
    """Per-bucket client figures and the sessions connected now. The analyzer adds each
    receive's latency to :attr:`_Bucket.latency` of the bucket :meth:`observe` returns, with
    the latency summaries' own sketches (one bucket index for all)."""

    def __init__(self, bucket_s: float) -> None:
        self.bucket_s = bucket_s
        self._bucket_ns = max(1, int(bucket_s * 1e9))
        self._buckets: dict[int, _Bucket] = {}
        self._sessions: set[tuple[str, str, str]] = set()
        self._last: tuple[int, _Bucket] | None = None

    def _bucket(self, t: int) -> _Bucket:
        idx = t // self._bucket_ns
        last = self._last
        if last is not None and last[0] == idx:
            return last[1]
        b = self._buckets.get(idx)
        if b is None:
            self._buckets[idx] = b = _Bucket()
        self._last = (idx, b)
        return b

    def sent(self, t: int) -> None:
        last = self._last
        if last is not None and last[0] == t // self._bucket_ns:
            last[1].sent += 1
        else:
            self._bucket(t).sent += 1

    def received(self, t: int) -> _Bucket:
        """:meth:`observe` of a receive that is no failure (the commonest event)."""
        last = self._last
        b = last[1] if last is not None and last[0] == t // self._bucket_ns else self._bucket(t)
        b.received += 1
        return b

    def observe(
        self, t: int, ev: Receive | Connected | SessionError | Disconnect, cls: str | bool | None
    ) -> _Bucket:
        """Fold a session event other than a send; ``cls``: its failure class."""
        b = self._bucket(t)
        if isinstance(ev, Receive):
            b.received += 1
        elif isinstance(ev, Connected):
            b.connects += 1
            self._sessions.add((ev.target, ev.tenant, ev.session))
        elif isinstance(ev, Disconnect):
            self._sessions.discard((ev.target, ev.tenant, ev.session))
        if isinstance(cls, str):
            b.errors += 1
        return b

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def buckets(self, origin_ns: int) -> list[SeriesBucket]:
        """Every bucket from the first to the last event, empty ones included."""
        if not self._buckets:
            return []
        out = []
        width = self._bucket_ns
        for idx in range(min(self._buckets), max(self._buckets) + 1):
            b = self._buckets.get(idx) or _Bucket()
            p50, p99 = b.latency.quantiles((0.5, 0.99))
            out.append(
                SeriesBucket(
                    start_s=round((idx * width - origin_ns) / 1e9, 6),
                    sent=b.sent,
                    received=b.received,
                    errors=b.errors,
                    connects=b.connects,
                    p50_ms=p50,
                    p99_ms=p99,
                )
            )
        return out

    def recent(self, end_ns: int, window_s: float = LIVE_WINDOW_S) -> Recent:
        """Rates over the complete buckets of the last ``window_s`` before ``end_ns`` (the
        bucket holding ``end_ns`` is still filling; a run shorter than one bucket uses it)."""
        last = end_ns // self._bucket_ns
        n = max(1, round(window_s * 1e9 / self._bucket_ns))
        idxs = range(last - n, last) if last - 1 >= min(self._buckets, default=last) else [last]
        chosen = [b for i in idxs if (b := self._buckets.get(i)) is not None]
        span_s = len(idxs) * self._bucket_ns / 1e9
        lat = LogHistogram()
        for b in chosen:
            lat.merge(b.latency)
        received = sum(b.received for b in chosen)
        errors = sum(b.errors for b in chosen)
        connects = sum(b.connects for b in chosen)
        total = errors + connects + received
        return Recent(
            throughput_per_s=received / span_s,
            error_rate_pct=100.0 * errors / total if total else 0.0,
            p99_ms=lat.quantile(0.99),
        )


@dataclass(frozen=True)
class Recent:
    throughput_per_s: float
    error_rate_pct: float
    """Errors / (errors + connects + receives), as ``error_ratio`` in the load figures."""
    p99_ms: float | None


def series_windows(faults: FaultWindows, origin_ns: int) -> list[SeriesWindow]:
    """The analyzer's fault windows in seconds from ``origin_ns``, ordered by start."""
    return [
        SeriesWindow(
            fault_id=w.fault_id,
            proxy=w.proxy,
            fault_type=w.fault_type,
            start_s=max(0.0, (w.started_ns - origin_ns) / 1e9),
            end_s=None if w.ended_ns is None else max(0.0, (w.ended_ns - origin_ns) / 1e9),
        )
        for w in sorted(faults.windows, key=lambda w: (w.started_ns, w.fault_id))
    ]
