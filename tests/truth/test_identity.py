"""Two targets, two generators and two runs of one experiment that reuse tenant and session
names: a system that echoed every message is reported whole (no loss, no episode)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from analyzers.core import Analyzer
from generators.runner import Generator, GeneratorOptions
from schemas.load import LoadProfile
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.analyzers.build import by_kind, one
from tests.truth.sut import TruthEcho

pytestmark = pytest.mark.timeout(120)

EXP = "truth-identity"


def _profile(target: str) -> LoadProfile:
    return LoadProfile.model_validate(
        {
            "target": target,
            "tenants": [{"name": "acme", "users": 3}],
            "duration_s": 30,
            "ramp": {"shape": "constant"},
            "seed": 1,
            "script": [
                {"do": "connect"},
                {"do": "send", "count": 40, "rate_per_s": 100, "expect": "echo"},
                {"do": "disconnect"},
            ],
        }
    )


async def test_reused_names_across_targets_generators_and_runs_are_not_confused() -> None:
    sink = MemorySink()
    async with TruthEcho() as a, TruthEcho() as b:
        targets = {
            "svc-a": Target(name="svc-a", upstream=a.address, protocol="tcp"),
            "svc-b": Target(name="svc-b", upstream=b.address, protocol="tcp"),
        }
        # run-1: one generator on each target, and a second generator on svc-a; run-2 repeats
        # svc-a with the first generator's id. Every one names its sessions acme-u<k>-s0.
        plan = [
            ("run-1", "gen-1", "svc-a"),
            ("run-1", "gen-1", "svc-b"),
            ("run-1", "gen-2", "svc-a"),
            ("run-2", "gen-1", "svc-a"),
        ]
        gens = [
            Generator(
                _profile(target),
                targets[target],
                sink,
                GeneratorOptions(experiment_id=EXP, run_id=run, generator_id=gen),
            )
            for run, gen, target in plan
        ]
        await asyncio.gather(*(g.run() for g in gens))
        echoed = a.log.echoed + b.log.echoed
    sessions = Counter(e.session for e in sink.of_kind("session.send"))
    assert set(sessions) == {"acme-u0-s0", "acme-u1-s0", "acme-u2-s0"}  # names do repeat
    assert not sink.of_kind("session.error")  # the clients saw nothing wrong

    analyzer = Analyzer(EXP)
    analyzer.ingest(sink.events)
    analyzer.finish()
    results = analyzer.results()
    total = one(results, "result.integrity", scope="overall")
    assert total.sent == 4 * 3 * 40 == echoed
    assert total.received == echoed
    assert (total.lost, total.duplicated, total.reordered, total.late_replies) == (0, 0, 0, 0)
    for target in targets:
        assert one(results, "result.integrity", scope="target", scope_key=target).lost == 0
    assert by_kind(results, "result.episode") == []
    assert one(results, "result.availability", scope="overall").availability_pct == 100.0
