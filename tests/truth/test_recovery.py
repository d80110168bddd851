"""User-experienced recovery, per session as its client logged it: first failure to first
success after it, with exact p50/p95/max per target, tenant and fault, beside the episodes
(whose spread — median and max — is reported beside their mean)."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from analyzers.core import Analyzer, AnalyzerConfig, HealthThresholds, SloSpec
from generators.runner import Generator, GeneratorOptions
from injector.controller import ToxiproxyController
from injector.executor import Executor, RunOptions
from injector.proxy import ProxyServer
from injector.validate import load_experiment
from schemas.events import ProxyDisabled, ProxyEnabled
from schemas.load import LoadProfile
from schemas.targets import Target
from spine.eventlog import MemorySink
from tests.analyzers.build import by_kind, one
from tests.truth.sut import TruthEcho

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(180)

EXP = "truth-recovery"


def _nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _observation(ev: Any) -> bool | None:
    """The client's own log: True failed, False succeeded, None neither."""
    if ev.kind == "session.error":
        return True
    if ev.kind == "session.disconnect":
        return True if ev.by != "client" else None
    if ev.kind in ("session.receive", "session.connected"):
        return False
    return None


async def test_user_experienced_recovery_is_what_each_session_lived(tmp_path: Path) -> None:
    sink = MemorySink()
    truth = MemorySink()
    faults = [
        {"id": f"cut-{i}", "at": 1.0 + 3.0 * i, "duration": 1.0, "proxy": "svc", "down": True}
        for i in range(3)
    ]
    async with TruthEcho() as echo, ProxyServer(host="127.0.0.1", port=0, sink=truth) as proxy:
        ctl = ToxiproxyController(str(proxy.api_url))
        listen = (await ctl.create_proxy("svc", echo.address, "127.0.0.1:0")).listen
        doc = {
            "title": "recovery",
            "extensions": [
                {
                    "name": "aftershock",
                    "experiment_id": EXP,
                    "targets": [{"name": "svc", "upstream": echo.address, "proxy": "svc"}],
                    "faults": faults,
                }
            ],
        }
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        ex = Executor(load_experiment(path), ctl, sink, RunOptions(experiment_id=EXP))
        profile = LoadProfile.model_validate(
            {
                "target": "svc",
                "tenants": [{"name": "acme", "users": 4}, {"name": "globex", "users": 4}],
                "duration_s": 10.5,
                "ramp": {"shape": "constant"},
                "seed": 11,
                # client back-off: sessions come back one by one, well after the proxy
                "reconnect": {"initial_ms": 100, "max_ms": 700, "multiplier": 2, "jitter": 0.5},
                "script": [
                    {"do": "connect"},
                    {"do": "send", "rate_per_s": 40, "expect": "echo", "timeout_ms": 400},
                ],
            }
        )
        gen = Generator(
            profile,
            Target(name="svc", upstream=listen, protocol="tcp"),
            sink,
            GeneratorOptions(experiment_id=EXP, run_id=ex.run_id, generator_id="load"),
        )
        load = asyncio.create_task(gen.run())
        assert (await ex.run()).status == "completed"
        await load
    events = [*sink.events, *truth.events]
    cuts = [e for e in truth.events if isinstance(e, ProxyDisabled)]
    backs = [e for e in truth.events if isinstance(e, ProxyEnabled)]
    assert len(cuts) == len(backs) == 3

    # Each session's recoveries, from its client's own log.
    failing: dict[str, int] = {}
    lived: dict[tuple[str, str], list[int]] = defaultdict(list)
    for ev in sorted(sink.events, key=lambda e: e.ts_ns):
        obs = _observation(ev)
        if obs is None:
            continue
        if obs:
            failing.setdefault(ev.session, ev.ts_ns)
        elif ev.session in failing:
            began = failing.pop(ev.session)
            took = ev.ts_ns - began
            cut = next(i for i, c in enumerate(cuts) if c.ts_ns <= began < backs[i].ts_ns + 10**9)
            # The system under test's own truth: nobody got through before the proxy let them.
            assert began + took >= backs[cut].ts_ns
            for dim in (("target", "svc"), ("tenant", ev.tenant), ("overall", ""),
                        ("fault", f"cut-{cut}")):  # fmt: skip
                lived[dim].append(took)
    assert not failing
    assert len(lived[("overall", "")]) >= 3 * 8  # every session lost service at every cut

    config = AnalyzerConfig(
        health=HealthThresholds(window_s=0.3, min_failures=3, recover_hold_s=0.5),
        slos=[SloSpec(recovery_p95_max_s=0.5)],
    )
    analyzer = Analyzer(EXP, config)
    analyzer.ingest(events)
    analyzer.finish()
    results = analyzer.results()
    for (scope, key), took in lived.items():
        r = one(results, "result.recovery", scope=scope, scope_key=key)
        assert (r.recoveries, r.unrecovered) == (len(took), 0)
        assert r.p50_ms == _nearest_rank(took, 0.5) / 1e6
        assert r.p95_ms == _nearest_rank(took, 0.95) / 1e6
        assert r.max_ms == max(took) / 1e6
        assert r.mean_ms == sum(took) / len(took) / 1e6
    # users lived longer outages than the proxy's second: back-off
    assert one(results, "result.recovery", scope="overall").max_ms > 1000

    episodes = [e for e in by_kind(results, "result.episode") if e.scope == "target"]
    durations = sorted(int(e.ended_ns - e.started_ns) for e in episodes)
    av = one(results, "result.availability", scope="target", scope_key="svc")
    assert av.episodes == len(episodes) == 3
    assert av.episode_median_s == statistics.median(durations) / 1e9
    assert av.episode_max_s == durations[-1] / 1e9
    check = next(c for c in one(results, "result.verdict", phase="").checks
                 if c.name == "recovery_p95")  # fmt: skip
    assert check.observed == _nearest_rank(lived[("overall", "")], 0.95) / 1e9
    assert check.passed is False
