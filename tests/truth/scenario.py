"""A small game day on loopback, its events fanned out (the run's own fan-out) to every sink a
test needs: two load
profiles (two targets, one tenant name) through the real fault proxy, a store ← front
dependency, one outage driven by the injector, and the run's analysis configuration written
first into the log."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import yaml

from analyzers.core import AnalyzerConfig, HealthThresholds, SloSpec
from generators.runner import Generator, GeneratorOptions
from injector.controller import ToxiproxyController
from injector.executor import Executor, RunOptions
from injector.proxy import ProxyServer
from injector.validate import load_experiment
from schemas.events import ExperimentAnalysis
from schemas.load import LoadProfile
from schemas.targets import Target, TargetGraph
from spine import clock
from tests.truth.sut import Relay, TruthEcho

if TYPE_CHECKING:
    from pathlib import Path

    from spine.eventlog import EventSink


def _profile(target: str) -> LoadProfile:
    return LoadProfile.model_validate(
        {
            "target": target,
            "tenants": [{"name": "acme", "users": 4}],
            "duration_s": 4.0,
            "ramp": {"shape": "constant"},
            "seed": 9,
            "reconnect": {"initial_ms": 10, "max_ms": 50, "jitter": 0.0},
            "script": [
                {"do": "connect"},
                {"do": "send", "rate_per_s": 40, "expect": "echo", "timeout_ms": 400},
            ],
        }
    )


async def run_scenario(experiment_id: str, tmp_path: Path, sink: EventSink) -> AnalyzerConfig:
    """Run the game day; returns the configuration it wrote into the log."""
    async with TruthEcho() as store, ProxyServer(host="127.0.0.1", port=0, sink=sink) as proxy:
        ctl = ToxiproxyController(str(proxy.api_url))
        listen = (await ctl.create_proxy("store-proxy", store.address, "127.0.0.1:0")).listen
        async with Relay(listen, sequential=False) as front:
            targets = [
                Target(name="store", upstream=store.address, proxy="store-proxy"),
                Target(name="front", upstream=front.address, depends_on=["store"]),
            ]
            config = AnalyzerConfig(
                graph=TargetGraph(targets=targets),
                health=HealthThresholds(window_s=0.3, min_failures=3, recover_hold_s=0.4),
                slos=[SloSpec(availability_min_pct=99.0), SloSpec(target="front", mttr_max_s=0.1)],
                baseline_phase="method",
                after_effect_s=2.0,
            )
            doc = {
                "title": "replay",
                "extensions": [
                    {
                        "name": "aftershock",
                        "experiment_id": experiment_id,
                        "targets": [t.model_dump(mode="json") for t in targets],
                        "faults": [
                            {"id": "cut", "at": 1.2, "duration": 0.6, "proxy": "store-proxy",
                             "down": True}
                        ],
                    }
                ],
            }  # fmt: skip
            path = tmp_path / "exp.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            ex = Executor(load_experiment(path), ctl, sink, RunOptions(experiment_id=experiment_id))
            ts_ns, mono_ns = clock.stamp()
            sink.emit(
                ExperimentAnalysis(
                    experiment_id=experiment_id,
                    run_id=ex.run_id,
                    generator_id=ex.opts.generator_id,
                    ts_ns=ts_ns,
                    mono_ns=mono_ns,
                    config=config,
                )
            )
            addresses = {"store": listen, "front": front.address}
            gens = [
                Generator(
                    _profile(name),
                    Target(name=name, upstream=addresses[name], protocol="tcp"),
                    sink,
                    GeneratorOptions(experiment_id=experiment_id, run_id=ex.run_id),
                )
                for name in ("store", "front")
            ]
            loads = [asyncio.create_task(g.run()) for g in gens]
            await ex.run()
            await asyncio.gather(*loads)
    return config
