"""Stability search: run the profile at growing concurrency until the SLOs break.

Each level is a fresh run of the profile's script with the first ``level`` sessions of the
population, all started at once (the profile's ramp is replaced by a constant one, its stagger
kept), for ``hold_s`` seconds. A level is stable when its error rate and client p99 round
trip stay within the SLOs; the search stops at the first unstable level and reports the highest
stable one (None when even the first level broke).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from generators.runner import Generator, GeneratorOptions
from generators.shapes import stability_levels
from schemas.load import RampShape

if TYPE_CHECKING:
    from collections.abc import Callable

    from generators.clock import Clock
    from generators.engines.base import Engine
    from generators.stats import GeneratorStats
    from schemas.load import LoadProfile, StabilitySearch
    from schemas.targets import Target
    from spine.eventlog.sink import EventSink


@dataclass(frozen=True, slots=True)
class LevelResult:
    sessions: int
    stats: GeneratorStats
    stable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class StabilityReport:
    levels: tuple[LevelResult, ...]
    highest_stable: int | None

    def lines(self) -> list[str]:
        out = [
            f"{r.sessions:>7} sessions: {'stable' if r.stable else 'BROKE'} ({r.reason}) "
            f"{r.stats.line()}"
            for r in self.levels
        ]
        out.append(f"highest stable level: {self.highest_stable}")
        return out


def judge(stats: GeneratorStats, search: StabilitySearch) -> tuple[bool, str]:
    if stats.error_rate > search.max_error_rate:
        return False, f"error rate {stats.error_rate:.3%} > {search.max_error_rate:.3%}"
    if stats.p99_ms is None:
        return False, "no round trip completed"
    if stats.p99_ms > search.max_p99_ms:
        return False, f"p99 {stats.p99_ms:.1f} ms > {search.max_p99_ms:g} ms"
    return True, f"error rate {stats.error_rate:.3%}, p99 {stats.p99_ms:.1f} ms"


async def search_stability(
    profile: LoadProfile,
    target: Target,
    sink: EventSink,
    options: GeneratorOptions,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
) -> StabilityReport:
    search = profile.stability
    if search is None:
        raise ValueError("the profile has no stability section")
    maximum = min(search.max_sessions or profile.total_sessions, profile.total_sessions)
    start = min(search.start, maximum)
    # A level is a concurrency: all its sessions start together (keeping any stagger), so
    # the whole level is under load for the hold time whatever ramp the profile has.
    ramp = RampShape(shape="constant", stagger_ms=profile.ramp.stagger_ms)
    held = profile.model_copy(update={"duration_s": search.hold_s, "stability": None, "ramp": ramp})
    results: list[LevelResult] = []
    highest: int | None = None
    for level in stability_levels(start, search.step, maximum, search.factor):
        gen = Generator(
            held,
            target,
            sink,
            dataclasses.replace(options, limit=level),
            clock=clock,
            engine=engine,
        )
        stats = await gen.run()
        stable, reason = judge(stats, search)
        result = LevelResult(level, stats, stable, reason)
        results.append(result)
        if on_level is not None:
            on_level(result)
        if not stable:
            break
        highest = level
    return StabilityReport(tuple(results), highest)
