"""Guaranteed rollback: the injector runs as a real process and is interrupted or killed mid-fault.

SIGINT/SIGTERM: the process reverts everything itself, then exits 130/143. SIGKILL: nothing runs
in the process any more; on the fault proxy the leases expire and the server reverts; on a server
without leases, ``aftershock injector reap`` removes what the journal or event log names.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from injector.journal import FaultState, read_journal

from .conftest import write_experiment

if TYPE_CHECKING:
    from pathlib import Path

    from aftershock.eventlog import MemorySink
    from injector.controller import ToxiproxyController

    from .conftest import Echo

LEASE_TTL_S = 1.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}


async def _cli(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aftershock.cli.main",
        *args,
        cwd=cwd,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _until(pred: Any, timeout_s: float, step_s: float = 0.01) -> float:
    """Poll the async predicate until true; returns seconds waited."""
    t0 = time.monotonic()
    while not await pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(step_s)
    return time.monotonic() - t0


class Scene:
    """Two proxies in front of the echo server; the experiment puts a toxic on one and takes
    the other down, both for a minute."""

    def __init__(self, tmp_path: Path, controller: ToxiproxyController, echo: Echo, tag: str):
        self.tmp = tmp_path
        self.ctl = controller
        self.echo = echo
        self.eid = f"kill-{tag}"
        self.journal = tmp_path / f"{tag}.journal.json"
        self.events = tmp_path / f"{tag}.events.jsonl"

    async def setup(self) -> None:
        existing = await self.ctl.list_proxies()
        for name in ("slowed", "downed"):
            if name not in existing:
                await self.ctl.create_proxy(name, self.echo.address, "127.0.0.1:0")

    def file(self) -> Path:
        doc = {
            "title": f"signals {self.eid}",
            "extensions": [
                {
                    "name": "aftershock",
                    "experiment_id": self.eid,
                    "targets": [
                        {"name": "a", "upstream": self.echo.address, "proxy": "slowed"},
                        {"name": "b", "upstream": self.echo.address, "proxy": "downed"},
                    ],
                    "faults": [
                        {
                            "id": f"{self.eid}-lat",
                            "at": 0,
                            "duration": "1m",
                            "proxy": "slowed",
                            "toxic": {"type": "latency", "attributes": {"latency": 50}},
                        },
                        {
                            "id": f"{self.eid}-down",
                            "at": 0,
                            "duration": "1m",
                            "proxy": "downed",
                            "down": True,
                        },
                    ],
                    "leases": {"ttl": LEASE_TTL_S, "heartbeat": 0.3},
                }
            ],
        }
        return write_experiment(self.tmp, doc, f"{self.eid}.yaml")

    async def start(self, *extra: str) -> asyncio.subprocess.Process:
        proc = await _cli(
            self.tmp,
            "injector",
            "run",
            str(self.file()),
            "--toxiproxy-url",
            self.ctl.api_url,
            "--journal",
            str(self.journal),
            "--events",
            str(self.events),
            *extra,
        )
        await _until(self.faulted, 20)
        # The server changes first, the event follows: wait for both to be in the log.
        await _until(self.logged, 5)
        return proc

    async def logged(self) -> bool:
        text = self.events.read_text() if self.events.exists() else ""
        return '"fault.toxic_added"' in text and '"fault.proxy_disabled"' in text

    async def faulted(self) -> bool:
        slowed = await self.ctl.get_proxy("slowed")
        downed = await self.ctl.get_proxy("downed")
        return any(t.name == f"{self.eid}-lat" for t in slowed.toxics) and not downed.enabled

    async def clean(self) -> bool:
        slowed = await self.ctl.get_proxy("slowed")
        downed = await self.ctl.get_proxy("downed")
        return not slowed.toxics and downed.enabled


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_sigint_and_sigterm_revert_everything_before_exit(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, signum: int, code: int
) -> None:
    scene = Scene(tmp_path, controller, echo, signal.Signals(signum).name.lower())
    await scene.setup()
    proc = await scene.start()
    proc.send_signal(signum)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == code, err.decode()
    assert await scene.clean()  # reverted by the process itself, not by a lease
    journal = read_journal(scene.journal)
    assert journal.status == "interrupted"
    assert {f.state for f in journal.aftershock.faults} == {FaultState.REVERTED}
    assert b"status interrupted" in err


async def test_sigkill_mid_fault_leases_revert_within_ttl(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, proxy_sink: MemorySink
) -> None:
    revert_s: list[float] = []
    for i in range(3):
        scene = Scene(tmp_path, controller, echo, f"lease{i}")
        await scene.setup()
        proc = await scene.start()
        # Kill at a different point of the heartbeat each time.
        await asyncio.sleep(random.uniform(0.05, 0.6))
        proc.kill()
        killed = time.monotonic()
        await proc.wait()
        assert not await scene.clean()  # the killed process reverted nothing
        await _until(scene.clean, LEASE_TTL_S + 2)
        revert_s.append(time.monotonic() - killed)
        journal = read_journal(scene.journal)
        assert journal.status == "running"  # it never got to write an end
        assert {f.state for f in journal.aftershock.faults} == {FaultState.ACTIVE}
    # Nothing survived its lease (polling adds up to 10 ms).
    assert max(revert_s) <= LEASE_TTL_S + 0.1, revert_s
    expired = [e for e in proxy_sink.events if getattr(e, "reason", None) == "lease_expired"]
    assert len(expired) == 3
    print(
        f"time to revert after SIGKILL (ttl {LEASE_TTL_S}s): "
        + ", ".join(f"{s * 1000:.0f} ms" for s in revert_s)
    )


@pytest.mark.parametrize("source", ["journal", "events"])
async def test_sigkill_without_leases_then_reap(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, source: str
) -> None:
    scene = Scene(tmp_path, controller, echo, f"reap-{source}")
    await scene.setup()
    proc = await scene.start("--no-leases")
    proc.kill()
    await proc.wait()
    await asyncio.sleep(LEASE_TTL_S + 0.5)
    assert await scene.faulted()  # without leases nothing reverts by itself
    args = (
        ["--journal", str(scene.journal)]
        if source == "journal"
        else ["--events", str(scene.events), "--experiment-id", scene.eid]
    )
    reaper = await _cli(tmp_path, "injector", "reap", "--toxiproxy-url", controller.api_url, *args)
    out, err = await asyncio.wait_for(reaper.communicate(), 15)
    assert reaper.returncode == 0, err.decode()
    assert await scene.clean()
    text = out.decode()
    assert f"slowed: toxic {scene.eid}-lat: removed" in text
    assert f"downed: outage {scene.eid}-down: removed" in text
    # Reaping again finds nothing left to do.
    again = await _cli(tmp_path, "injector", "reap", "--toxiproxy-url", controller.api_url, *args)
    out2, _ = await asyncio.wait_for(again.communicate(), 15)
    assert again.returncode == 0
    assert "already gone" in out2.decode()
