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

    from injector.controller import ToxiproxyController
    from spine.eventlog import MemorySink
    from tests.processes import Processes

    from .conftest import Echo

LEASE_TTL_S = 1.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")}


async def _cli(
    procs: Processes, cwd: Path, *args: str, env: dict[str, str] | None = None, full: bool = False
) -> asyncio.subprocess.Process:
    """``aftershock ARGS`` in its own process. ``injector`` commands start through
    ``python -m injector.cli`` (the same commands, a second quicker) unless ``full``."""
    if args[0] == "injector" and not full:
        argv = ["-m", "injector.cli", *args[1:]]
    else:
        argv = ["-m", "aftershock.cli.main", *args]
    return await procs.exec(
        sys.executable,
        *argv,
        cwd=cwd,
        env={**_env(), **(env or {})},
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

    def __init__(
        self,
        procs: Processes,
        tmp_path: Path,
        controller: ToxiproxyController,
        echo: Echo,
        tag: str,
    ):
        self.procs = procs
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

    async def start(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        proc = await _cli(
            self.procs,
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
            env=env,
        )
        await _until(self.faulted, 60)
        # The server changes first, the event follows: wait for both to be in the log.
        await _until(self.logged, 30)
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
    tmp_path: Path,
    controller: ToxiproxyController,
    echo: Echo,
    signum: int,
    code: int,
    procs: Processes,
) -> None:
    scene = Scene(procs, tmp_path, controller, echo, signal.Signals(signum).name.lower())
    await scene.setup()
    proc = await scene.start()
    proc.send_signal(signum)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, err.decode()
    assert await scene.clean()  # reverted by the process itself, not by a lease
    journal = read_journal(scene.journal)
    assert journal.status == "interrupted"
    assert {f.state for f in journal.aftershock.faults} == {FaultState.REVERTED}
    assert b"status interrupted" in err


async def test_sigkill_mid_fault_leases_revert_within_ttl(
    tmp_path: Path,
    controller: ToxiproxyController,
    echo: Echo,
    proxy_sink: MemorySink,
    procs: Processes,
) -> None:
    revert_s: list[float] = []
    for i in range(3):
        scene = Scene(procs, tmp_path, controller, echo, f"lease{i}")
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
    # Nothing survived its lease (give or take the scheduling of a busy machine; the precise
    # figure is a speed target, not a test's).
    assert max(revert_s) <= LEASE_TTL_S + 1.0, revert_s
    expired = [e for e in proxy_sink.events if getattr(e, "reason", None) == "lease_expired"]
    assert len(expired) == 3
    print(
        f"time to revert after SIGKILL (ttl {LEASE_TTL_S}s): "
        + ", ".join(f"{s * 1000:.0f} ms" for s in revert_s)
    )


async def test_sigkill_without_leases_then_reap(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, procs: Processes
) -> None:
    from injector.reap import Leftover, leftovers_from_events, leftovers_from_journal

    scene = Scene(procs, tmp_path, controller, echo, "reap")
    await scene.setup()
    proc = await scene.start("--no-leases")
    proc.kill()
    await proc.wait()
    await asyncio.sleep(LEASE_TTL_S + 0.2)
    assert await scene.faulted()  # without leases nothing reverts by itself
    # Journal and event log name the same leftovers.
    expected = {
        Leftover("slowed", "toxic", f"{scene.eid}-lat"),
        Leftover("downed", "down", f"{scene.eid}-down"),
    }
    assert set(leftovers_from_journal(scene.journal)[1]) == expected
    assert set(leftovers_from_events(scene.events, scene.eid)) == expected
    args = ["--journal", str(scene.journal), "--events", str(scene.events)]
    reaper = await _cli(
        procs, tmp_path, "injector", "reap", "--toxiproxy-url", controller.api_url, *args
    )
    out, err = await asyncio.wait_for(reaper.communicate(), 60)
    assert reaper.returncode == 0, err.decode()
    assert await scene.clean()
    lines = out.decode().splitlines()
    assert sorted(lines) == [
        f"downed: outage {scene.eid}-down: removed",
        f"slowed: toxic {scene.eid}-lat: removed",
    ]
    # Reaping again finds nothing left to do (the server URL comes from the journal).
    again = await _cli(procs, tmp_path, "injector", "reap", "--journal", str(scene.journal))
    out2, _ = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0
    assert out2.decode().count("already gone") == 2


def test_cli_refuses_an_invalid_file_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aftershock.cli.main import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nbogus: 1\n")
    result = CliRunner().invoke(
        app, ["injector", "run", str(bad), "--toxiproxy-url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert "bogus: unknown key 'bogus'" in result.output


async def test_cli_exit_2_when_the_server_cannot_run_the_plan(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, procs: Processes
) -> None:
    doc = {
        "title": "needs corruption",
        "extensions": [
            {
                "name": "aftershock",
                "targets": [{"name": "a", "upstream": echo.address, "proxy": "p"}],
                "faults": [
                    {
                        "id": "bits",
                        "at": 0,
                        "duration": 1,
                        "proxy": "p",
                        "toxic": {"type": "corrupt", "attributes": {"probability": 0.5}},
                    }
                ],
            }
        ],
    }
    path = write_experiment(tmp_path, doc, "corrupt.yaml")
    proc = await _cli(
        procs,
        tmp_path,
        "injector",
        "run",
        str(path),
        "--standard",
        "--toxiproxy-url",
        controller.api_url,
        "--journal",
        str(tmp_path / "j.json"),
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2, err.decode()
    assert "fault 'bits' needs toxic type 'corrupt'" in err.decode()
    assert await controller.list_proxies() == {}


async def test_run_publishes_its_events_to_kafka(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, stack: Any, procs: Processes
) -> None:
    import uuid

    from spine.eventlog.reader import EventReader

    topic = f"injector-events-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic])
    await controller.create_proxy("k", echo.address, "127.0.0.1:0")
    doc = {
        "title": "to kafka",
        "extensions": [
            {
                "name": "aftershock",
                "experiment_id": "to-kafka",
                "targets": [{"name": "k", "upstream": echo.address, "proxy": "k"}],
                "faults": [
                    {
                        "id": "k-slow",
                        "at": 0.1,
                        "duration": 0.2,
                        "proxy": "k",
                        "toxic": {"type": "latency", "attributes": {"latency": 5}},
                    }
                ],
            }
        ],
    }
    path = write_experiment(tmp_path, doc, "kafka.yaml")
    proc = await procs.exec(
        sys.executable,
        "-m",
        "aftershock.cli.main",
        "injector",
        "run",
        str(path),
        "--toxiproxy-url",
        controller.api_url,
        "--kafka-bootstrap",
        stack.kafka_bootstrap,
        cwd=tmp_path,
        env={**_env(), "AFTERSHOCK_TOPIC_EVENTS": topic},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "in_spool=0" in err.decode()
    events = []
    async with (
        EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as reader,
        asyncio.timeout(60),
    ):
        while not any(e.kind == "experiment.ended" for e in events):
            events += await reader.read(idle_timeout_s=0.2)
    # Order holds per partition key: lifecycle events among themselves, faults per proxy.
    lifecycle = [e.kind for e in events if e.kind.startswith("experiment.")]
    assert lifecycle[0] == "experiment.started"
    assert lifecycle[-1] == "experiment.ended"
    faults = [(e.kind, e.fault_id) for e in events if e.kind.startswith("fault.")]
    assert faults == [("fault.toxic_added", "k-slow"), ("fault.toxic_removed", "k-slow")]


async def test_sigkill_without_leases_then_reap_from_the_kafka_event_log(
    tmp_path: Path, controller: ToxiproxyController, echo: Echo, stack: Any, procs: Processes
) -> None:
    import uuid

    from spine.eventlog.reader import EventReader

    topic = f"injector-reap-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic])
    env = {"AFTERSHOCK_TOPIC_EVENTS": topic}
    scene = Scene(procs, tmp_path, controller, echo, "reap-kafka")
    await scene.setup()
    proc = await scene.start("--no-leases", "--kafka-bootstrap", stack.kafka_bootstrap, env=env)
    # kill -9 loses the publisher's buffer: kill once both fault events are in Kafka.
    wanted = {"fault.toxic_added", "fault.proxy_disabled"}
    async with EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as log:
        seen: set[str] = set()
        async with asyncio.timeout(60):
            while not wanted <= seen:
                seen |= {e.kind for e in await log.read(idle_timeout_s=0.2)}
    proc.kill()
    await proc.wait()
    assert await scene.faulted()
    reaper = await _cli(
        procs,
        tmp_path,
        "injector",
        "reap",
        "--kafka",
        "--kafka-bootstrap",
        stack.kafka_bootstrap,
        "--experiment-id",
        scene.eid,
        "--toxiproxy-url",
        controller.api_url,
        env=env,
    )
    out, err = await asyncio.wait_for(reaper.communicate(), 60)
    assert reaper.returncode == 0, err.decode()
    assert f"slowed: toxic {scene.eid}-lat: removed" in out.decode()
    assert await scene.clean()
