"""Isolation groups against the system's own log: a chat that delivers one tenant's
broadcasts to another tenant's sessions counts every such delivery; the analyzers' groups
count exactly as many, although only the first few violations of each group are kept as
records."""

from __future__ import annotations

import pytest

from analyzers.core import Analyzer, AnalyzerConfig
from generators.runner import Generator, GeneratorOptions
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.analyzers.build import by_kind, one
from tests.generators.conftest import profile
from tests.generators.servers import ChatLikeServer

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("cap", [0, 3])
async def test_cross_tenant_deliveries_are_counted_exactly_in_groups(cap: int) -> None:
    sink = MemorySink()
    exp = f"truth-isolation-groups-{cap}"
    async with ChatLikeServer() as chat:
        chat.leak_to = "globex"  # every acme broadcast also reaches globex's sessions
        await _run(chat, sink, exp)
    leaked = dict(chat.leaked)
    analyzer = Analyzer(exp, AnalyzerConfig(violation_examples=cap))
    analyzer.ingest(sink.events)
    analyzer.finish()
    results = analyzer.results()
    groups = by_kind(results, "result.isolation_group")
    counted: dict[tuple[str, str], int] = {}
    for g in groups:
        assert (g.violation, g.target, g.faults_active, g.faults_after) == ("tenant", "gw", [], [])
        counted[(g.origin_tenant, g.victim_tenant)] = g.count
    assert counted == leaked
    total = sum(leaked.values())
    assert total > 3  # more than the examples kept: a count of records would be wrong
    assert one(results, "result.live").isolation_violations == total
    verdict = one(results, "result.verdict", phase="")
    assert f"isolation_violations {total} exceeds 0" in verdict.reasons
    examples = by_kind(results, "result.isolation_violation")
    assert len(examples) == min(cap, total) == sum(g.examples_kept for g in groups)
    assert {(v.origin_tenant, v.victim_tenant) for v in examples} <= {("acme", "globex")}
    (g,) = groups
    assert g.first_ns <= min((v.seen_ns for v in examples), default=g.first_ns)
    assert set(g.example_sessions) <= {"globex-u0-s0", "globex-u1-s0"}
    assert len(g.example_sessions) == min(cap, 2)  # distinct victims, at most the cap
    assert len(g.example_trace_ids) <= cap


async def _run(chat: ChatLikeServer, sink: MemorySink, exp: str) -> None:
    prof = profile(
        duration_s=10,
        auth={"base_url": chat.base_url},
        script=[
            {"do": "connect"},
            {"do": "subscribe"},
            {"do": "think", "min_ms": 300, "max_ms": 300},
            {"do": "send", "count": 10, "rate_per_s": 50, "expect": "broadcast"},
            {"do": "think", "min_ms": 500, "max_ms": 500},
            {"do": "disconnect"},
        ],
    )
    await Generator(
        prof,
        Target(name="gw", upstream=chat.address, protocol="ws", path="/ws"),
        sink,
        GeneratorOptions(experiment_id=exp),
    ).run()
