"""A game day whose embedded broker is restarted mid-run (it forgets everything it held): the
run's publisher notices, sends its events again, and ``aftershock replay`` from Kafka then
yields the live analysis' results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spine import stackstate
from spine.settings import Settings
from spine.stack import EmbeddedStack, restart_detached

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.processes import Processes

SHORT = Path(__file__).parent / "short-gameday.yaml"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aftershock.cli.main", *args]


def _comparable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Result records without what says when or by whom they were computed."""
    drop = {"event_id", "ts_ns", "mono_ns", "generator_id", "run_id", "computed_at_ns"}
    out = [{k: v for k, v in r.items() if k not in drop} for r in results]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


@contextlib.asynccontextmanager
async def _run_whose_broker_restarts(
    tmp_path: Path, procs: Processes, **env_extra: str
) -> AsyncIterator[tuple[subprocess.Popen[str], Path, dict[str, str]]]:
    """``aftershock run`` of the short game day against a detached embedded stack whose broker
    is restarted (empty, with a new cluster id) once the run's local log holds 50 kB: yields
    the run's process, its runs directory and environment; stops the stack afterwards."""
    settings = Settings(state_dir=tmp_path / "state")
    stack = EmbeddedStack(settings, detached=True)
    await stack.start()
    stack.detach()
    runs = tmp_path / "runs"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AFTERSHOCK_")},
        "AFTERSHOCK_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "AFTERSHOCK_REDIS_URL": stack.redis_url,
        "AFTERSHOCK_STATE_DIR": str(settings.state_dir),
        **env_extra,
    }
    try:
        proc = procs.popen(
            _cli("run", str(SHORT), "--runs-dir", str(runs), "--line-every-s", "5"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        async with asyncio.timeout(90):  # the run is under way: its local log grows
            while sum(p.stat().st_size for p in runs.glob("*/events/*.seg")) < 50_000:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                await asyncio.sleep(0.1)
        assert await restart_detached(settings, ["kafka"])
        yield proc, runs, env
    finally:
        for path, rec in stackstate.read_records(settings.state_dir):
            if rec is not None:
                await stackstate.stop_record(settings.state_dir, path, rec)


async def test_a_run_whose_broker_restarted_replays_to_its_live_results(
    tmp_path: Path, procs: Processes
) -> None:
    async with _run_whose_broker_restarts(tmp_path, procs) as (proc, runs, env):
        _out, err = await asyncio.to_thread(proc.communicate, timeout=150)
        assert proc.returncode in (0, 1), err[-3000:]
        assert "events sent again" in err  # the console says what happened
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
        live = json.loads((run_dir / "results.json").read_text())["results"]
        replay = procs.run(
            _cli("replay", "short-gameday", "--json", "--config", str(run_dir / "analysis.json")),
            env=env, text=True, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr[-3000:]
        replayed = [json.loads(line) for line in replay.stdout.splitlines() if line.strip()]
        assert replayed
        assert _comparable(replayed) == _comparable(live)
        # and from the run's own local log
        local = procs.run(
            _cli("replay", "short-gameday", "--json", "--run", str(run_dir),
                 "--config", str(run_dir / "analysis.json")),
            env=env, text=True, timeout=120,
        )  # fmt: skip
        assert local.returncode == 0, local.stderr[-3000:]
        from_run = [json.loads(line) for line in local.stdout.splitlines() if line.strip()]
        assert _comparable(from_run) == _comparable(live)


def _run_verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    (verdict,) = [r for r in results if r["kind"] == "result.verdict" and r["phase"] == ""]
    return verdict


async def test_a_run_whose_log_lost_events_for_good_fails_live_and_in_replay(
    tmp_path: Path, procs: Processes
) -> None:
    """With no acknowledged batch kept, the restart loses events for good: the console, the
    exit status, the live verdict and both replays say so, with the same count."""
    async with _run_whose_broker_restarts(
        tmp_path, procs, AFTERSHOCK_EVENTLOG_RETAIN_BYTES="1"
    ) as (proc, runs, env):
        out, err = await asyncio.to_thread(proc.communicate, timeout=150)
        said = out + err
        assert proc.returncode == 1, said[-3000:]
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
        live = _run_verdict(json.loads((run_dir / "results.json").read_text())["results"])
        (reason,) = [r for r in live["reasons"] if r.startswith("the event log lost")]
        lost = int(reason.split()[4])
        assert lost > 0
        assert f"{lost} events are lost for good" in said  # the console line, as it happened
        assert not live["passed"]
        replayed = []
        for where in ([], ["--run", str(run_dir)]):  # from Kafka, from the run's local log
            replay = procs.run(
                _cli("replay", "short-gameday", "--json", *where,
                     "--config", str(run_dir / "analysis.json")),
                env=env, text=True, timeout=120,
            )  # fmt: skip
            replayed.append(_run_verdict([json.loads(x) for x in replay.stdout.splitlines() if x]))
        from_kafka, from_run = replayed
        assert reason in from_kafka["reasons"]
        assert not from_kafka["passed"]
        assert _comparable([from_run]) == _comparable([live])  # the local log lost nothing
