"""The live dashboard: its fold over events and results, pipe mode, and the terminal frame."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
import signal
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from aftershock.gameday.dashboard import Dashboard, render
from aftershock.gameday.live import LiveTap
from aftershock.gameday.remote import publish_snapshot
from schemas.events import (
    Connected,
    ExperimentPhase,
    ProxyDisabled,
    ProxyEnabled,
    Receive,
    Send,
    SessionError,
)
from schemas.results import Availability, FailureEpisode, IsolationViolation

if TYPE_CHECKING:
    import subprocess

    from spine.stack import EmbeddedStack
    from tests.processes import Processes

IDS = {"experiment_id": "e", "run_id": "r", "generator_id": "g"}
SESS = {"user": "u", "target": "gateway", "protocol": "ws"}


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _tap(clock: FakeClock) -> LiveTap:
    tap = LiveTap(title="T", experiment_id="e", run_id="r", planned_s=60.0, now_s=clock)
    tap.observe(ExperimentPhase(**IDS, ts_ns=1, phase="fault:redis-outage"))
    for tenant in ("acme", "globex"):
        tap.observe(
            Connected(**IDS, **SESS, ts_ns=1, tenant=tenant, session=f"{tenant}-1", connect_ms=1.0)
        )
    tap.observe(ProxyDisabled(**IDS, ts_ns=1, proxy="redis", fault_id="redis-outage"))
    for _sec in range(5):
        for i in range(10):
            tap.observe(
                Send(**IDS, **SESS, ts_ns=1, tenant="acme", session="acme-1", seq=i, bytes=10)
            )
            tap.observe(
                Receive(
                    **IDS,
                    **SESS,
                    ts_ns=1,
                    tenant="acme",
                    session="acme-1",
                    seq=i,
                    bytes=10,
                    latency_ms=float(i + 1),
                )
            )
        tap.observe(
            SessionError(
                **IDS,
                **SESS,
                ts_ns=1,
                tenant="acme",
                session="acme-1",
                error_class="closed_1011",
                message="x",
            )
        )
        clock.t += 1.0
    tap.update_results(
        [
            FailureEpisode(
                **IDS, ts_ns=1, scope="target", scope_key="gateway", episode_id="1", started_ns=1
            ),
            Availability(
                **IDS, ts_ns=1, availability_pct=90.0, episodes=2, mttr_s=4.5, observed_s=5.0
            ),
            IsolationViolation(
                **IDS,
                ts_ns=1,
                victim_tenant="globex",
                victim_session="globex-1",
                origin_tenant="acme",
                seen_ns=1,
                source_event_id="x",
            ),
        ]
    )
    return tap


def test_snapshot_folds_events_and_results() -> None:
    clock = FakeClock()
    s = _tap(clock).snapshot()
    assert s.phase == "fault:redis-outage"
    assert s.active_faults == ("redis-outage",)
    assert s.sessions == 2
    assert s.throughput_per_s == 10.0
    assert round(s.error_rate_pct, 2) == round(100 * 5 / 55, 2)
    assert s.p99_ms == 10.0
    assert s.open_episodes == ("target:gateway",)
    assert s.mttr_s == 4.5
    assert s.isolation_violations == 1
    assert s.elapsed_s == 5.0


def test_fault_reverted_leaves_the_active_list() -> None:
    clock = FakeClock()
    tap = _tap(clock)
    tap.observe(ProxyEnabled(**IDS, ts_ns=2, proxy="redis"))
    assert tap.snapshot().active_faults == ()


async def test_pipe_mode_prints_summary_lines() -> None:
    clock = FakeClock()
    tap = _tap(clock)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300)
    dash = Dashboard(tap.snapshot, console, line_every_s=0.02)
    task = asyncio.create_task(dash.run())
    await asyncio.sleep(0.15)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3
    assert all("\x1b[" not in ln for ln in lines)  # no escape codes in a pipe
    assert lines[-1] == (
        "[   5.0s/60s] phase=fault:redis-outage faults=redis-outage sessions=2 thr=10/s "
        "err=9.1% p99=10ms open_episodes=1 mttr=4.5s isolation=1"
    )


def test_terminal_frame_shows_every_figure() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(_tap(FakeClock()).snapshot()))
    text = console.export_text()
    for needle in (
        "fault:redis-outage",
        "redis-outage",
        "10 msg/s",
        "9.1 %",
        "10 ms",
        "target:gateway",
        "4.5 s",
        "isolation violations",
        "5 s of 60 s",
    ):
        assert needle in text, needle


def _dashboard_cli(
    procs: Processes, stack: EmbeddedStack, *args: str
) -> subprocess.CompletedProcess[str]:
    return procs.run(
        [sys.executable, "-m", "aftershock.cli.main", "dashboard", *args,
         "--redis-url", stack.redis_url, "--once"],
        text=True, timeout=120,
    )  # fmt: skip


async def test_remote_dashboard_reads_the_runs_snapshot(
    stack: EmbeddedStack, procs: Processes
) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(stack.redis_url)
    try:
        snap = _tap(FakeClock()).snapshot()
        await publish_snapshot(r, dataclasses.replace(snap, experiment_id="remote-a"))
    finally:
        await r.aclose()
    out = await asyncio.to_thread(_dashboard_cli, procs, stack, "remote-a")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "[   5.0s/60s] phase=fault:redis-outage faults=redis-outage sessions=2 thr=10/s "
        "err=9.1% p99=10ms open_episodes=1 mttr=4.5s isolation=1"
    )


async def test_remote_dashboard_falls_back_to_the_results_store(
    stack: EmbeddedStack, procs: Processes
) -> None:
    from redis.asyncio import Redis

    from spine.store import write_results

    ids = {"experiment_id": "remote-b", "run_id": "r", "generator_id": "analyzer"}
    r = Redis.from_url(stack.redis_url)
    try:
        await write_results(r, "remote-b", [
            FailureEpisode(**ids, ts_ns=1, scope="target", scope_key="gateway",
                           episode_id="1", started_ns=1, faults_active=["redis-outage"]),
            Availability(**ids, ts_ns=1, availability_pct=80.0, episodes=1, mttr_s=3.0,
                         observed_s=9.0),
        ])  # fmt: skip
    finally:
        await r.aclose()
    out = await asyncio.to_thread(_dashboard_cli, procs, stack, "remote-b")
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert "faults=redis-outage" in line
    assert "sessions=–" in line
    assert "open_episodes=1 mttr=3.0s isolation=0" in line
    missing = await asyncio.to_thread(_dashboard_cli, procs, stack, "remote-nobody")
    assert missing.returncode == 1
    assert "nothing in Redis" in missing.stderr


async def test_remote_dashboard_ends_on_ctrl_c(stack: EmbeddedStack, procs: Processes) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(stack.redis_url)
    try:
        snap = _tap(FakeClock()).snapshot()
        await publish_snapshot(r, dataclasses.replace(snap, experiment_id="remote-c"))
    finally:
        await r.aclose()
    proc = await procs.exec(
        sys.executable, "-m", "aftershock.cli.main", "dashboard", "remote-c",
        "--redis-url", stack.redis_url, "--line-every-s", "0.2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(120):
        assert "phase=fault:redis-outage" in (await proc.stdout.readline()).decode()
    await asyncio.sleep(random.random())  # Ctrl-C anywhere in its polling
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
