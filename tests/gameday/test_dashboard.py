"""The live dashboard renders the analyzers' ``result.live`` record: pipe mode, the terminal
frame, the final line, and the remote dashboard (the run's snapshot or the results store)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
import signal
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from aftershock.gameday.dashboard import Dashboard, render, summary_line
from aftershock.gameday.live import LiveTap
from aftershock.gameday.remote import live_key, publish_snapshot
from analyzers.core import Analyzer
from schemas.results import LiveFigures
from tests.analyzers.live_scenario import CONFIG, EXP, scenario

if TYPE_CHECKING:
    import subprocess

    from schemas.results import ResultEvent
    from spine.stack import EmbeddedStack
    from tests.processes import Processes

LINE = (
    "[   5.0s/60s] phase=fault:redis-outage faults=redis-outage sessions=2 thr=7/s "
    "err=41.7% p99=10ms open_episodes=0 episodes=1 mttr={mttr} isolation=0"
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _results() -> list[ResultEvent]:
    a = Analyzer(EXP, CONFIG)
    a.ingest(scenario())
    a.finish()
    return a.results()


def _mttr() -> str:
    live = next(r for r in _results() if isinstance(r, LiveFigures))
    assert live.mttr_s is not None
    return f"{live.mttr_s:.2f}s"


def _tap(clock: FakeClock) -> LiveTap:
    tap = LiveTap(title="T", experiment_id=EXP, run_id="run-1", planned_s=60.0, now_s=clock)
    clock.t += 5.0
    tap.update_results(_results())
    return tap


def test_snapshot_is_the_analyzers_live_record() -> None:
    live = next(r for r in _results() if isinstance(r, LiveFigures))
    s = _tap(FakeClock()).snapshot()
    assert s.phase == live.current_phase == "fault:redis-outage"
    assert s.active_faults == ("redis-outage",)
    assert s.sessions == live.sessions == 2
    assert s.throughput_per_s == live.throughput_per_s
    assert s.error_rate_pct == live.error_rate_pct
    assert s.p99_ms == live.p99_ms
    assert s.open_episodes == ()
    assert (s.episodes, s.mttr_s) == (live.episodes, live.mttr_s)
    assert s.isolation_violations == 0
    assert s.elapsed_s == 5.0


def test_before_any_result_the_snapshot_says_nothing_yet() -> None:
    clock = FakeClock()
    tap = LiveTap(title="T", experiment_id=EXP, run_id="run-1", planned_s=60.0, now_s=clock)
    s = tap.snapshot()
    assert (s.phase, s.sessions, s.p99_ms, s.mttr_s) == ("starting", None, None, None)
    assert summary_line(s).startswith("[   0.0s/60s] phase=starting faults=- sessions=–")


async def test_pipe_mode_prints_summary_lines_and_a_final_one() -> None:
    clock = FakeClock()
    tap = _tap(clock)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300)
    dash = Dashboard(tap.snapshot, console, line_every_s=0.02)
    task = asyncio.create_task(dash.run())
    async with asyncio.timeout(60):  # two lines while running, however slow the machine
        while dash.lines_printed < 2:
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    dash.show_final(tap.snapshot())
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3
    assert all("\x1b[" not in ln for ln in lines)  # no escape codes in a pipe
    assert lines[-1] == LINE.format(mttr=_mttr())


def test_terminal_frame_shows_every_figure() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(_tap(FakeClock()).snapshot()))
    text = console.export_text()
    for needle in (
        "fault:redis-outage",
        "redis-outage",
        "7 msg/s",
        "41.7 %",
        "10 ms",
        f"1 · {_mttr()[:-1]} s",
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
        # what the run publishes expires in 5 s; a busy machine may start the CLI slower
        await r.persist(live_key("remote-a"))
    finally:
        await r.aclose()
    out = await asyncio.to_thread(_dashboard_cli, procs, stack, "remote-a")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == LINE.format(mttr=_mttr())


async def test_remote_dashboard_falls_back_to_the_results_store(
    stack: EmbeddedStack, procs: Processes
) -> None:
    from redis.asyncio import Redis

    from spine.store import write_results

    records = [r.model_copy(update={"experiment_id": "remote-b"}) for r in _results()]
    r = Redis.from_url(stack.redis_url)
    try:
        await write_results(r, "remote-b", records)
    finally:
        await r.aclose()
    out = await asyncio.to_thread(_dashboard_cli, procs, stack, "remote-b")
    assert out.returncode == 0, out.stderr
    # the workers' result.live record, without the run's title and wall clock
    assert out.stdout.strip() == (
        "[   0.0s] phase=fault:redis-outage faults=redis-outage sessions=2 thr=7/s err=41.7% "
        f"p99=10ms open_episodes=0 episodes=1 mttr={_mttr()} isolation=0"
    )
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
