"""Injector figures: schedule start jitter, and time to revert after SIGINT vs after SIGKILL.

``python -m bench injector``. Everything runs on 127.0.0.1 against the embedded fault proxy:

1. jitter — a timeline of 40 faults 25 ms apart, run with leases (heartbeat renewing) and
   without, side by side; lateness of each inject call against its planned offset.
2. revert — an injector process holding a toxic and an outage is interrupted (SIGINT: it
   reverts itself) or killed (SIGKILL: the server's leases revert, TTL 1 s); time from the
   signal until the proxy is clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import run_stoppable
from injector.controller import ToxiproxyController
from injector.executor import Executor, RunOptions
from injector.proxy import ProxyServer
from injector.validate import load_experiment
from spine.eventlog import MemorySink

ROUNDS = 5
LEASE_TTL_S = 1.0


def _fmt(values: list[float]) -> str:
    s = sorted(values)
    return (
        f"n={len(s)} p50={s[len(s) // 2]:.2f} p95={s[min(len(s) - 1, int(len(s) * 0.95))]:.2f} "
        f"max={s[-1]:.2f} mean={statistics.fmean(s):.2f}"
    )


def _doc(eid: str, upstream: str, faults: list[dict[str, Any]], leases: bool) -> dict[str, Any]:
    return {
        "title": eid,
        "extensions": [
            {
                "name": "aftershock",
                "experiment_id": eid,
                "targets": [{"name": "t", "upstream": upstream, "proxy": "p"}],
                "faults": faults,
                "leases": {"enabled": leases, "ttl": LEASE_TTL_S, "heartbeat": 0.3},
            }
        ],
    }


async def _jitter(ctl: ToxiproxyController, tmp: Path, leases: bool) -> list[float]:
    faults = [
        {
            "id": f"f{i}",
            "at": 0.1 + i * 0.025,
            "duration": 0.2,
            "proxy": "p",
            "toxic": {"type": "latency", "attributes": {"latency": 1}},
        }
        for i in range(40)
    ]
    path = tmp / f"jitter-{leases}.yaml"
    path.write_text(yaml.safe_dump(_doc(f"jitter-{leases}", "127.0.0.1:9", faults, leases)))
    journal = await Executor(load_experiment(path), ctl, MemorySink(), RunOptions()).run()
    return [f.jitter_ms for f in journal.aftershock.faults if f.jitter_ms is not None]


async def _revert_after(ctl: ToxiproxyController, tmp: Path, sig: int, i: int) -> float:
    faults = [
        {
            "id": f"lat{i}",
            "at": 0,
            "duration": 60,
            "proxy": "p",
            "toxic": {"type": "latency", "attributes": {"latency": 5}},
        },
        {"id": f"down{i}", "at": 0, "duration": 60, "proxy": "q", "down": True},
    ]
    doc = _doc(f"revert-{i}", "127.0.0.1:9", faults, True)
    doc["extensions"][0]["targets"].append({"name": "u", "upstream": "127.0.0.1:9", "proxy": "q"})
    path = tmp / f"revert-{i}.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aftershock.cli.main",
        "injector",
        "run",
        str(path),
        "--toxiproxy-url",
        ctl.api_url,
        "--journal",
        str(tmp / f"revert-{i}.json"),
        cwd=tmp,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    try:

        async def faulted() -> bool:
            p, q = await ctl.get_proxy("p"), await ctl.get_proxy("q")
            return bool(p.toxics) and not q.enabled

        async def clean() -> bool:
            p, q = await ctl.get_proxy("p"), await ctl.get_proxy("q")
            return not p.toxics and q.enabled

        while not await faulted():
            await asyncio.sleep(0.01)
        await asyncio.sleep(random.uniform(0.05, 0.6))
        proc.send_signal(sig)
        t0 = time.monotonic()
        while not await clean():
            await asyncio.sleep(0.005)
        took = time.monotonic() - t0
    except BaseException:  # this benchmark is stopped: so is the injector run
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
        raise
    await proc.wait()
    return took * 1000


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        async with ProxyServer(host="127.0.0.1", port=0, sink=MemorySink()) as server:
            ctl = ToxiproxyController(server.api_url)
            await ctl.create_proxy("p", "127.0.0.1:9", "127.0.0.1:0")
            await ctl.create_proxy("q", "127.0.0.1:9", "127.0.0.1:0")
            with_leases = await _jitter(ctl, tmp, True)
            without = await _jitter(ctl, tmp, False)
            print(f"inject jitter ms, leases on : {_fmt(with_leases)}")
            print(f"inject jitter ms, leases off: {_fmt(without)}")
            print(
                f"ratio p95 on/off: {sorted(with_leases)[38] / max(sorted(without)[38], 1e-3):.2f}"
            )
            sigint = [await _revert_after(ctl, tmp, signal.SIGINT, i) for i in range(ROUNDS)]
            sigkill = [
                await _revert_after(ctl, tmp, signal.SIGKILL, ROUNDS + i) for i in range(ROUNDS)
            ]
            print(f"revert after SIGINT  ms (the injector reverts): {_fmt(sigint)}")
            print(f"revert after SIGKILL ms (leases, ttl {LEASE_TTL_S:g} s): {_fmt(sigkill)}")
            print(
                "ratio median SIGKILL/SIGINT: "
                f"{statistics.median(sigkill) / statistics.median(sigint):.1f}"
            )


if __name__ == "__main__":
    run_stoppable(lambda: asyncio.run(main()), "the proxy and the injector runs")
