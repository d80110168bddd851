"""``aftershock run --continuous``: rotating rounds, rolling verdicts, restart, bounded state."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import pytest
import redis
from prometheus_client import generate_latest

from aftershock.gameday.continuous import (
    Continuous,
    ContinuousOptions,
    ContinuousState,
    RoundVerdict,
    round_experiment,
)
from aftershock.gameday.run import GamedayOptions, RunOutcome
from injector.validate import load_experiment
from schemas.load import SendStep
from spine.settings import Settings
from tests.gameday.test_run import SHORT, _cli, _env

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.processes import Processes


def test_rounds_rotate_faults_and_scale_the_load() -> None:
    exp = load_experiment(SHORT)
    opts = ContinuousOptions(round_s=20, rate_scale=0.25)
    ids = []
    for n in range(3):
        r = round_experiment(exp, n, opts)
        ax = r.aftershock
        assert ax.experiment_id == f"short-gameday-r{n}"
        assert len(ax.faults) == 1
        ids.append(ax.faults[0].id)
        assert ax.faults[0].at == 5.0
        assert ax.faults[0].duration <= 8.0
        assert all(p.duration_s == 20 for p in ax.load)
        (send,) = [s for s in ax.load[0].script if isinstance(s, SendStep)]
        assert send.rate_per_s == 1.0  # 4/s in the file
        assert r.method == []
    assert ids == ["redis-outage", "reconnect-storm", "redis-outage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_verdicts_go_to_prometheus_and_redis(stack: EmbeddedStack, tmp_path: Path) -> None:
    from redis.asyncio import Redis

    exp = load_experiment(SHORT)
    c = Continuous(
        exp,
        Settings(state_dir=tmp_path),
        GamedayOptions(runs_dir=tmp_path / "runs"),
        ContinuousOptions(round_s=10),
    )
    history = [
        RoundVerdict(round=0, experiment_id="short-gameday-r0", run_id="a", fault="x",
                     passed=False, status="completed", failing=["gateway:mttr"], ended_ns=1),
        RoundVerdict(round=1, experiment_id="short-gameday-r1", run_id="b", fault="y",
                     passed=True, status="completed", ended_ns=2),
    ]  # fmt: skip
    state = ContinuousState(experiment_id="short-gameday-t", next_round=2, history=history)
    c.base_id = "short-gameday-t"
    r = Redis.from_url(stack.redis_url)
    try:
        await c._publish(r, state, RunOutcome(0, None, "completed", [], [], 1.0))
        text = generate_latest(c.registry).decode()
        assert 'aftershock_continuous_verdict_passed{experiment="short-gameday-t"} 1.0' in text
        assert 'aftershock_continuous_rounds{experiment="short-gameday-t"} 2.0' in text
        assert 'aftershock_continuous_pass_ratio{experiment="short-gameday-t"} 0.5' in text
        last = json.loads(await r.lindex("aftershock:short-gameday-t:continuous:verdicts", 0))
        assert last["round"] == 1
        assert await r.hget("aftershock:short-gameday-t:continuous", "next_round") == b"2"
    finally:
        await r.delete("aftershock:short-gameday-t:continuous:verdicts",
                       "aftershock:short-gameday-t:continuous")  # fmt: skip
        await r.aclose()


@pytest.mark.timeout(300)
def test_rounds_go_on_after_a_restart(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    runs = tmp_path / "runs"
    args = ["run", str(SHORT), "--continuous", "--round-s", "5", "--rounds", "1",
            "--runs-dir", str(runs), "--keep-runs", "1", "--no-dashboard"]  # fmt: skip
    env = _env(stack, tmp_path)
    for n in (0, 1):  # two processes, one round each
        proc = procs.run(_cli(*args), env=env, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"continuous round {n}:" in proc.stderr
    state = json.loads((runs / "continuous-short-gameday.json").read_text())
    assert state["next_round"] == 2
    assert [(v["round"], v["fault"]) for v in state["history"]] == [
        (0, "redis-outage"),
        (1, "reconnect-storm"),
    ]
    # only the newest round's run directory and live results are kept
    kept = [p.name for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    assert kept == [state["history"][-1]["run_id"]]
    r = redis.Redis.from_url(stack.redis_url)
    try:
        verdicts = r.lrange("aftershock:short-gameday:continuous:verdicts", 0, -1)
        assert [json.loads(v)["round"] for v in verdicts][:2] == [1, 0]
        assert not list(r.scan_iter("aftershock:short-gameday-r0:*"))
        assert list(r.scan_iter("aftershock:short-gameday-r1:results:*"))
    finally:
        r.close()
