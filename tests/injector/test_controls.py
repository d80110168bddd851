"""Game-day controls through Redis: pause, resume, skip and abort a running timeline."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from typer.testing import CliRunner

from aftershock.cli.main import app
from injector.control import send_command
from injector.executor import Executor, RunOptions
from injector.journal import FaultState
from injector.validate import load_experiment
from spine.eventlog import MemorySink

from .conftest import plan, write_experiment

if TYPE_CHECKING:
    from pathlib import Path

    from injector.controller import ToxiproxyController
    from tests.processes import Processes

    from .conftest import Echo


def _latency(fid: str, at: float, duration: float) -> dict[str, object]:
    return {
        "id": fid,
        "at": at,
        "duration": duration,
        "proxy": "echo",
        "toxic": {"type": "latency", "attributes": {"latency": 1}},
    }


async def _until(pred: object, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_pause_resume_skip_abort(
    tmp_path: Path,
    echo: Echo,
    controller: ToxiproxyController,
    redis_url: str,
    procs: Processes,
) -> None:
    await controller.create_proxy("echo", echo.address, "127.0.0.1:0")
    eid = f"controls-{uuid.uuid4().hex[:8]}"
    doc = plan(
        echo.address,
        [
            _latency("f1", 8, 0.3),
            _latency("f2", 9, 30),
            _latency("f3", 20, 30),
            _latency("f4", 60, 1),
        ],
        experiment_id=eid,
    )
    client = aioredis.Redis.from_url(redis_url)
    sink = MemorySink()
    ex = Executor(
        load_experiment(write_experiment(tmp_path, doc)), controller, sink, RunOptions(redis=client)
    )
    by_id = {f.fault_id: f for f in ex.faults}
    run = asyncio.create_task(ex.run())
    try:
        await _until(lambda: ex.timeline.started)
        # From another terminal: the real command line, in its own process.
        pause = await procs.exec(
            sys.executable,
            "-m",
            "aftershock.cli.main",
            "control",
            "pause",
            eid,
            "--redis-url",
            redis_url,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await pause.communicate()
        assert pause.returncode == 0, err.decode()
        assert f"sent pause to {eid} (run {ex.run_id}" in out.decode()
        await _until(lambda: ex.timeline.paused)

        # Skipping while paused moves the clock to f1's start, but nothing starts.
        await send_command(client, eid, "skip", "tester")
        await _until(lambda: ex.timeline.offset_s() >= 8)
        await asyncio.sleep(0.4)
        assert by_id["f1"].state == FaultState.PENDING
        assert await controller.list_toxics("echo") == []

        await send_command(client, eid, "resume", "tester")
        await _until(lambda: by_id["f2"].state == FaultState.ACTIVE)
        assert by_id["f1"].state == FaultState.REVERTED

        await send_command(client, eid, "skip", "tester")
        await _until(lambda: by_id["f3"].state == FaultState.ACTIVE)
        assert by_id["f2"].state == FaultState.REVERTED
        assert ex.timeline.offset_s() >= 20

        await send_command(client, eid, "abort", "tester")
        journal = await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
        await client.aclose()
    assert journal.status == "aborted"
    assert "aborted by tester" in (journal.aftershock.abort_reason or "")
    states = {f.fault_id: f.state for f in journal.aftershock.faults}
    assert states == {
        "f1": FaultState.REVERTED,
        "f2": FaultState.REVERTED,
        "f3": FaultState.REVERTED,
        "f4": FaultState.SKIPPED,
    }
    assert await controller.list_toxics("echo") == []
    controls = [e for e in sink.events if e.kind == "experiment.control"]
    assert [e.command for e in controls] == ["pause", "skip", "resume", "skip", "abort"]
    assert controls[0].issued_by  # user@host of the other terminal
    assert [c.command for c in journal.aftershock.controls] == [
        "pause",
        "skip",
        "resume",
        "skip",
        "abort",
    ]


def test_control_without_a_running_experiment_says_so(redis_url: str) -> None:
    result = CliRunner().invoke(
        app, ["control", "abort", f"nobody-{uuid.uuid4().hex[:6]}", "--redis-url", redis_url]
    )
    assert result.exit_code == 1
    assert "no running injector" in result.output


async def test_safeguard_reads_the_analyzers_live_results_in_redis(
    tmp_path: Path, echo: Echo, controller: ToxiproxyController, redis_url: str
) -> None:
    from schemas.results import Availability
    from spine.store import write_results

    await controller.create_proxy("echo", echo.address, "127.0.0.1:0")
    eid = f"guard-{uuid.uuid4().hex[:8]}"
    doc = plan(
        echo.address,
        [_latency("long", 0, 30)],
        experiment_id=eid,
        section={"safeguards": [{"metric": "error_rate", "above_pct": 50, "for": "2s"}]},
    )
    client = aioredis.Redis.from_url(redis_url)
    ex = Executor(
        load_experiment(write_experiment(tmp_path, doc)),
        controller,
        MemorySink(),
        RunOptions(redis=client),
    )
    run = asyncio.create_task(ex.run())

    def avail(pct: float, at_s: float) -> Availability:
        ns = 1_000_000_000
        return Availability(
            experiment_id=eid,
            run_id="a",
            generator_id="analyzer",
            ts_ns=int(at_s * ns),
            window_end_ns=int(at_s * ns),
            availability_pct=pct,
            episodes=1,
            observed_s=at_s,
        )

    try:
        await _until(lambda: ex.faults[0].state == FaultState.ACTIVE)
        await write_results(client, eid, [avail(30, 100)])  # 70 % errors...
        await asyncio.sleep(0.6)
        assert not run.done()  # ...but not yet for 2 s
        await write_results(client, eid, [avail(20, 102.5)])
        journal = await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
        await client.aclose()
    assert journal.status == "aborted"
    assert "safeguard: error rate 80.0% > 50% for 2.5s" in (journal.aftershock.abort_reason or "")
    assert await controller.list_toxics("echo") == []


async def test_unreachable_redis_does_not_break_the_run(
    tmp_path: Path, echo: Echo, controller: ToxiproxyController
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{s.getsockname()[1]}/0")
        doc = plan(
            echo.address,
            [_latency("short", 0.1, 0.3)],
            experiment_id=f"dead-redis-{uuid.uuid4().hex[:6]}",
            section={"safeguards": [{"metric": "isolation_violations"}]},
        )
        ex = Executor(
            load_experiment(write_experiment(tmp_path, doc)),
            controller,
            MemorySink(),
            RunOptions(redis=dead),
        )
        journal = await asyncio.wait_for(ex.run(), 10)
        await dead.aclose()
    assert journal.status == "completed", journal.aftershock.error
    assert journal.aftershock.faults[0].state == FaultState.REVERTED


async def test_run_ending_at_once_stops_its_redis_helpers(
    tmp_path: Path, echo: Echo, controller: ToxiproxyController, redis_url: str
) -> None:
    # The hypothesis fails before the method: the run ends while its Redis helpers are still
    # connecting. A cancellation swallowed inside redis-py once kept the run waiting forever.
    doc = plan(
        echo.address,
        [_latency("never", 1, 1)],
        experiment_id=f"quick-{uuid.uuid4().hex[:6]}",
        section={"safeguards": [{"metric": "isolation_violations"}]},
        **{
            "steady-state-hypothesis": {
                "title": "never holds",
                "probes": [
                    {
                        "type": "probe",
                        "name": "refused",
                        "tolerance": 200,
                        "provider": {"type": "http", "url": "http://127.0.0.1:9/", "timeout": 1},
                    }
                ],
            }
        },
    )
    for _ in range(3):
        client = aioredis.Redis.from_url(redis_url)
        ex = Executor(
            load_experiment(write_experiment(tmp_path, doc)),
            controller,
            MemorySink(),
            RunOptions(redis=client),
        )
        try:
            journal = await asyncio.wait_for(ex.run(), 10)
        finally:
            await client.aclose()
        assert journal.status == "failed"
        assert journal.aftershock.faults[0].state == FaultState.SKIPPED
