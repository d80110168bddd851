"""Running counters of a generator and their immutable snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from spine.sketch import LogHistogram

FOLD_EVERY_S = 1.0
"""How often a running generator folds the round trips appended since into its sketch."""


class Counters:
    """Mutated on the hot path by sessions; read through :meth:`snapshot`."""

    __slots__ = (
        "active",
        "checksum_failures",
        "connect_failures",
        "connects",
        "cross_tenant",
        "errors",
        "latencies_ms",
        "latency",
        "receives",
        "reconnects",
        "sends",
        "started",
        "timeouts",
    )

    def __init__(self) -> None:
        self.started = 0
        self.active = 0
        self.connects = 0
        self.connect_failures = 0
        self.reconnects = 0
        self.sends = 0
        self.receives = 0
        self.errors = 0
        self.timeouts = 0
        self.cross_tenant = 0
        self.checksum_failures = 0
        self.latencies_ms: list[float] = []
        """Round trips (ms) not yet in :attr:`latency`. Sessions append here, one C call per
        receipt; :meth:`fold_latencies` empties it into the sketch."""
        self.latency = LogHistogram()
        """Every round trip so far, in log-spaced buckets (1 % relative error): memory stays
        bounded however long a generator runs, and a snapshot sorts buckets, not samples."""

    def fold_latencies(self) -> None:
        buf = self.latencies_ms
        if buf:
            self.latency.add_many(buf)
            buf.clear()

    def reset_latencies(self) -> None:
        """Forget the round trips so far (a measurement window starts)."""
        self.latencies_ms.clear()
        self.latency = LogHistogram()

    def snapshot(self, elapsed_s: float, events: int) -> GeneratorStats:
        self.fold_latencies()
        lat = self.latency
        p50, p99 = lat.quantiles((0.5, 0.99))
        return GeneratorStats(
            elapsed_s=elapsed_s,
            started=self.started,
            active=self.active,
            connects=self.connects,
            connect_failures=self.connect_failures,
            reconnects=self.reconnects,
            sends=self.sends,
            receives=self.receives,
            errors=self.errors,
            timeouts=self.timeouts,
            cross_tenant=self.cross_tenant,
            checksum_failures=self.checksum_failures,
            round_trips=lat.count,
            p50_ms=p50,
            p99_ms=p99,
            max_ms=lat.max if lat.count else None,
            events=events,
        )


@dataclass(frozen=True, slots=True)
class GeneratorStats:
    elapsed_s: float
    started: int
    active: int
    connects: int
    connect_failures: int
    reconnects: int
    sends: int
    receives: int
    errors: int
    timeouts: int
    cross_tenant: int
    checksum_failures: int
    round_trips: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    events: int

    @property
    def error_rate(self) -> float:
        """Errors (incl. timeouts) per attempted send or connect, at most 1.0 (one message
        can fail twice, e.g. a server error answer and then the timeout of its echo)."""
        attempts = self.sends + self.connects + self.connect_failures
        return min(1.0, self.errors / attempts) if attempts else 0.0

    def line(self) -> str:
        p99 = f"{self.p99_ms:.1f}" if self.p99_ms is not None else "-"
        p50 = f"{self.p50_ms:.1f}" if self.p50_ms is not None else "-"
        return (
            f"t={self.elapsed_s:6.1f}s active={self.active} connects={self.connects} "
            f"fail={self.connect_failures} sends={self.sends} recv={self.receives} "
            f"err={self.errors} timeouts={self.timeouts} xtenant={self.cross_tenant} "
            f"corrupt={self.checksum_failures} p50={p50}ms p99={p99}ms events={self.events}"
        )
