"""Stability search steps concurrency up and stops at the first level that breaks the SLOs."""

from __future__ import annotations

from generators.runner import GeneratorOptions
from generators.stability import search_stability
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.generators.conftest import profile
from tests.generators.servers import ChatLikeServer


async def test_search_reports_the_highest_level_within_the_slos() -> None:
    async with ChatLikeServer() as server:
        server.max_sockets = 6  # above six concurrent sessions every echo is refused
        prof = profile(
            tenants=[{"name": "a", "users": 12}],
            script=[{"do": "connect"}, {"do": "send", "rate_per_s": 20, "timeout_ms": 300}],
            stability={"start": 2, "step": 2, "hold_s": 0.6, "max_error_rate": 0.05},
        )
        target = Target(name="gw", upstream=server.address, protocol="ws", path="/ws")
        seen = []
        report = await search_stability(
            prof, target, MemorySink(), GeneratorOptions(experiment_id="s"), on_level=seen.append
        )
    assert [r.sessions for r in report.levels] == [2, 4, 6, 8]
    assert [r.stable for r in report.levels] == [True, True, True, False]
    assert report.highest_stable == 6
    assert "error rate" in report.levels[-1].reason
    assert seen == list(report.levels)
    # every session of a level was connected during its hold
    assert [r.stats.connects for r in report.levels] == [2, 4, 6, 8]
