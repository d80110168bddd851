"""``aftershock run --continuous``: rotating rounds, rolling verdicts, restart, bounded state."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from subprocess import PIPE
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
from aftershock.report.files import write_reports
from aftershock.report.model import RunData, RunMeta
from injector.validate import load_experiment
from schemas.load import SendStep
from schemas.results import Availability, Verdict
from spine.settings import Settings
from tests.gameday.test_run import SHORT, _cli, _env
from tests.promtool import check_metrics

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


async def test_verdicts_go_to_prometheus_and_redis(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
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
        assert (
            'aftershock_continuous_rounds_total{experiment="short-gameday-t",outcome="pass"} 1.0'
            in text
        )
        check_metrics(procs, text)
        assert 'aftershock_continuous_pass_ratio{experiment="short-gameday-t"} 0.5' in text
        last = json.loads(await r.lindex("aftershock:short-gameday-t:continuous:verdicts", 0))
        assert last["round"] == 1
        assert await r.hget("aftershock:short-gameday-t:continuous", "next_round") == b"2"
    finally:
        await r.delete("aftershock:short-gameday-t:continuous:verdicts",
                       "aftershock:short-gameday-t:continuous")  # fmt: skip
        await r.aclose()


def _samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a metrics page, by label set."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name) :].rpartition(" ")
            out[labels] = float(value)
    return out


async def test_a_figure_without_data_has_no_sample(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    from redis.asyncio import Redis

    c = Continuous(
        load_experiment(SHORT),
        Settings(state_dir=tmp_path),
        GamedayOptions(runs_dir=tmp_path / "runs"),
        ContinuousOptions(round_s=10),
    )
    c.base_id = exp = f"nodata-{tmp_path.name[-8:]}"
    ids = {"experiment_id": exp, "run_id": "r1", "generator_id": "analyzer", "ts_ns": 1}
    run_dir = tmp_path / "r1"
    records = [
        Availability(**ids, scope="target", scope_key="gateway", availability_pct=80.0,
                     episodes=1, mttr_s=2.5, observed_s=10.0),
        Availability(**ids, scope="target", scope_key="redis", availability_pct=100.0,
                     episodes=0, mttr_s=None, observed_s=10.0),
        Verdict(**ids, passed=False, reasons=["gateway: availability"]),
    ]  # fmt: skip
    write_reports(run_dir, RunData.of(RunMeta(experiment_id=exp, run_id="r1"), records))
    judged = RoundVerdict(round=0, experiment_id=exp, run_id="r1", fault="x", passed=False,
                          status="completed", ended_ns=1)  # fmt: skip
    errored = RoundVerdict(round=1, experiment_id=exp, run_id="", fault="y", passed=None,
                           status="error", ended_ns=2)  # fmt: skip
    r = Redis.from_url(stack.redis_url)
    try:
        state = ContinuousState(experiment_id=exp, next_round=1, history=[judged])
        await c._publish(r, state, RunOutcome(1, run_dir, "completed", [], [], 1.0))
        text = generate_latest(c.registry).decode()
        check_metrics(procs, text)
        e = f'experiment="{exp}"'
        assert _samples(text, "aftershock_continuous_mttr_seconds") == {
            f'{{{e},target="gateway"}}': 2.5
        }  # no episode at redis: no MTTR, not 0
        assert _samples(text, "aftershock_continuous_availability_pct") == {
            f'{{{e},target="gateway"}}': 80.0,
            f'{{{e},target="redis"}}': 100.0,
        }
        assert _samples(text, "aftershock_continuous_verdict_passed") == {f"{{{e}}}": 0.0}
        assert _samples(text, "aftershock_continuous_isolation_violations") == {f"{{{e}}}": 0.0}

        # an errored round: no verdict, no figures; counted as an error
        state = ContinuousState(experiment_id=exp, next_round=2, history=[judged, errored])
        await c._publish(r, state, RunOutcome(2, None, "error", [], ["boom"], 0.0))
        text = generate_latest(c.registry).decode()
        check_metrics(procs, text)
        for name in ("mttr_seconds", "availability_pct", "verdict_passed", "isolation_violations"):
            assert _samples(text, f"aftershock_continuous_{name}") == {}, name
        assert _samples(text, "aftershock_continuous_pass_ratio") == {f"{{{e}}}": 0.0}
        assert _samples(text, "aftershock_continuous_rounds_total") == {
            f'{{{e},outcome="fail"}}': 1.0,
            f'{{{e},outcome="error"}}': 1.0,
        }
    finally:
        await r.delete(f"aftershock:{exp}:continuous:verdicts", f"aftershock:{exp}:continuous")
        await r.aclose()


@pytest.mark.timeout(300)
def test_rounds_go_on_after_a_restart(
    stack: EmbeddedStack, tmp_path: Path, procs: Processes
) -> None:
    runs = tmp_path / "runs"
    args = ["run", str(SHORT), "--continuous", "--round-s", "5", "--rounds", "1",
            "--runs-dir", str(runs), "--keep-runs", "1", "--no-dashboard"]  # fmt: skip
    env = _env(stack, tmp_path)
    port = _free_port()
    scraped: list[str] = []
    # the first process serves its metrics and, after its last round, waits to be scraped
    first = procs.popen(
        _cli(*args, "--metrics-port", str(port), "--metrics-linger-s", "300"),
        env=env, stdout=PIPE, stderr=PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            text = ""
        if "aftershock_continuous_rounds_total{" in text:
            scraped.append(text)
            break
        time.sleep(0.2)
    _, err = first.communicate(timeout=90)  # it exits once scraped, not after 300 s
    assert first.returncode == 0, err[-3000:]
    assert "continuous round 0:" in err
    (v0,) = json.loads((runs / "continuous-short-gameday.json").read_text())["history"]
    word = {True: "PASS", False: "FAIL", None: "ERROR"}[v0["passed"]]
    failing = f"; failing {', '.join(v0['failing'])}" if v0["failing"] else ""
    line = f"round 0: {word} ({v0['status']}); fault redis-outage{failing}; run {v0['run_id']}"
    assert line in err.splitlines(), err
    # the round's fault span is in its span file, and the sessions that ran under it link to it
    spans = [
        json.loads(line) for line in (runs / v0["run_id"] / "spans.jsonl").read_text().splitlines()
    ]
    (fault,) = [x for x in spans if x["name"] == "fault redis-outage"]
    linked = [
        x
        for x in spans
        if x["name"] == "session"
        and any(lk["context"]["span_id"] == fault["context"]["span_id"] for lk in x["links"])
    ]
    assert linked
    assert all(x["attributes"]["aftershock.fault.ids"] == ["redis-outage"] for x in linked)
    (text,) = scraped
    check_metrics(procs, text)
    assert len(_samples(text, "aftershock_continuous_rounds_total")) == 1
    assert sum(_samples(text, "aftershock_continuous_rounds_total").values()) == 1.0
    proc = procs.run(_cli(*args), env=env, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuous round 1:" in proc.stderr
    assert re.search(r"^round 1: [A-Z]+ \(\w+\); fault reconnect-storm;", proc.stderr, re.M)
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
