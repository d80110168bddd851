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
        "late_sends",
        "latencies_ms",
        "latency",
        "max_late_ms",
        "receives",
        "reconnects",
        "sends",
        "skipped_behind",
        "skipped_busy",
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
        self.late_sends = 0
        """Sends that left more than the lateness threshold after their scheduled time."""
        self.max_late_ms = 0.0
        self.skipped_behind = 0
        """Sends the generator dropped, more than a second behind its schedule."""
        self.skipped_busy = 0
        """Sends skipped because the connection was still waiting for earlier answers."""
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
            late_sends=self.late_sends,
            max_late_ms=self.max_late_ms,
            skipped_behind=self.skipped_behind,
            skipped_busy=self.skipped_busy,
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
    late_sends: int
    max_late_ms: float
    skipped_behind: int
    skipped_busy: int
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

    @property
    def fell_behind(self) -> bool:
        """The generator did not keep to its schedule: sends left late or were dropped."""
        return bool(self.late_sends or self.skipped_behind)

    def line(self) -> str:
        p99 = f"{self.p99_ms:.1f}" if self.p99_ms is not None else "-"
        p50 = f"{self.p50_ms:.1f}" if self.p50_ms is not None else "-"
        return (
            f"t={self.elapsed_s:6.1f}s active={self.active} connects={self.connects} "
            f"fail={self.connect_failures} sends={self.sends} recv={self.receives} "
            f"err={self.errors} timeouts={self.timeouts} xtenant={self.cross_tenant} "
            f"corrupt={self.checksum_failures} p50={p50}ms p99={p99}ms events={self.events}"
            + (f" busy-skipped={self.skipped_busy}" if self.skipped_busy else "")
            + (
                f" GENERATOR BEHIND: late={self.late_sends} (max {self.max_late_ms:.0f}ms) "
                f"skipped={self.skipped_behind}"
                if self.fell_behind
                else ""
            )
        )
