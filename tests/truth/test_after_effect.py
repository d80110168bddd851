"""A three-hop cascade whose last hop fails after the fault ended: store ← mid ← front, the
store cut by the real fault proxy for 0.5 s; the front tier waits 1 s for the mid tier before
giving a client up, so it fails only after the store is back. The cascade keeps that hop, as an
after-effect, and each hop is marked."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from analyzers.core import Analyzer, AnalyzerConfig, HealthThresholds
from generators.runner import Generator, GeneratorOptions
from injector.controller import ToxiproxyController
from injector.executor import Executor, RunOptions
from injector.proxy import ProxyServer
from injector.validate import load_experiment
from schemas.events import ProxyDisabled, ProxyEnabled
from schemas.load import LoadProfile
from schemas.targets import Target, TargetGraph
from spine.eventlog import MemorySink
from tests.analyzers.build import one
from tests.truth.sut import Relay, TruthEcho

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(180)

EXP = "truth-after-effect"


def _profile(target: str, rate: float, timeout_ms: float) -> LoadProfile:
    return LoadProfile.model_validate(
        {
            "target": target,
            "tenants": [{"name": f"{target}-t", "users": 6}],
            "duration_s": 5.0,
            "ramp": {"shape": "constant"},
            "seed": 5,
            "reconnect": {"initial_ms": 10, "max_ms": 50, "jitter": 0.0},
            "script": [
                {"do": "connect"},
                {"do": "send", "rate_per_s": rate, "expect": "echo", "timeout_ms": timeout_ms},
            ],
        }
    )


def _failure(ev: Any) -> bool:
    return ev.kind == "session.error" or (ev.kind == "session.disconnect" and ev.by != "client")


async def test_a_dependent_failing_after_the_fault_ended_is_its_after_effect(
    tmp_path: Path,
) -> None:
    sink = MemorySink()
    async with TruthEcho() as store, ProxyServer(host="127.0.0.1", port=0, sink=sink) as proxy:
        ctl = ToxiproxyController(str(proxy.api_url))
        listen = (await ctl.create_proxy("store-proxy", store.address, "127.0.0.1:0")).listen
        async with (
            Relay(listen, sequential=False) as mid,
            Relay(mid.address, sequential=True, patience_s=1.0) as front,
        ):
            targets = [
                Target(name="store", upstream=store.address, proxy="store-proxy"),
                Target(name="mid", upstream=mid.address, depends_on=["store"]),
                Target(name="front", upstream=front.address, depends_on=["mid"]),
            ]
            doc = {
                "title": "late cascade",
                "extensions": [
                    {
                        "name": "aftershock",
                        "experiment_id": EXP,
                        "targets": [t.model_dump(mode="json") for t in targets],
                        "faults": [
                            {
                                "id": "store-cut",
                                "at": 1.5,
                                "duration": 0.5,
                                "proxy": "store-proxy",
                                "down": True,
                            }
                        ],
                    }
                ],
            }
            path = tmp_path / "exp.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            ex = Executor(load_experiment(path), ctl, sink, RunOptions(experiment_id=EXP))
            addresses = {"store": listen, "mid": mid.address, "front": front.address}
            shapes = {"store": (50, 300), "mid": (50, 300), "front": (20, 5000)}
            gens = [
                Generator(
                    _profile(name, *shapes[name]),
                    Target(name=name, upstream=addresses[name], protocol="tcp"),
                    sink,
                    GeneratorOptions(experiment_id=EXP, run_id=ex.run_id, generator_id="load"),
                )
                for name in ("store", "mid", "front")
            ]
            loads = [asyncio.create_task(g.run()) for g in gens]
            journal = await ex.run()
            await asyncio.gather(*loads)
            gave_up = list(front.gave_up)
    assert journal.status == "completed"
    cut = next(e for e in sink.events if isinstance(e, ProxyDisabled) and e.source == "proxy")
    back = next(e for e in sink.events if isinstance(e, ProxyEnabled) and e.source == "proxy")
    # Ground truth: the front tier gave its clients up only after the store was back.
    assert gave_up
    assert min(gave_up) > back.ts_ns

    config = AnalyzerConfig(
        graph=TargetGraph(targets=targets),
        health=HealthThresholds(window_s=0.2, min_failures=3, recover_hold_s=0.4),
    )
    analyzer = Analyzer(EXP, config)
    analyzer.ingest(sink.events)
    analyzer.finish()
    results = analyzer.results()
    front_failures = sorted(
        e.ts_ns for e in sink.events if _failure(e) and e.target == "front" and e.ts_ns > cut.ts_ns
    )
    # (the messages the front tier dropped are reported by their clients' own 5 s timeouts
    # later: a second episode, also an after-effect)
    ep = one(results, "result.episode", episode_id="target:front:1")
    assert ep.started_ns == front_failures[0]
    assert (ep.faults_active, ep.faults_after, ep.fault_relation) == ([], ["store-cut"], "after")
    c = one(results, "result.cascade", fault_id="store-cut")
    assert c.origin_target == "store"
    assert (c.window_start_ns, c.window_end_ns) == (cut.ts_ns, back.ts_ns)
    # store and mid both sit behind the cut: whose clients notice first is a race on a busy
    # machine; front fails last, after the fault ended
    hops = {h.target: h for h in c.hops}
    assert {t: (h.via, h.relation) for t, h in hops.items()} == {
        "store": (None, "during"),
        "mid": ("store", "during"),
        "front": ("mid", "after"),
    }
    assert c.hops[-1].target == "front"
    assert hops["front"].failed_after_ms == (front_failures[0] - cut.ts_ns) / 1e6
    assert c.contained is False
    assert c.blast_targets == 3
