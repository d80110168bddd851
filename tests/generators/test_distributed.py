"""Three generator processes share one plan through Redis: start barrier, disjoint shares that
cover the population, heartbeats, final statistics; a stop signal ends a run early."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from generators.distributed import Coordination, Plan, prefix
from generators.errors import CoordinationError

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.generators.servers import ChatLikeServer
    from tests.processes import Processes

pytestmark = pytest.mark.timeout(120)

RUN = """\
targets:
  - name: gw
    upstream: {address}
    protocol: ws
    path: /ws
load:
  - target: gw
    duration_s: {duration}
    ramp: {{shape: constant}}
    auth: {{base_url: "{base_url}"}}
    tenants:
      - {{name: acme, users: 7}}
      - {{name: globex, users: 5}}
    script:
      - do: connect
      - do: subscribe
      - do: send
        rate_per_s: 10
        expect: broadcast
"""


async def generate(procs: Processes, tmp: Path, redis_url: str, *args: str) -> tuple[int, str]:
    proc = await procs.exec(
        sys.executable,
        "-m",
        "aftershock.cli.main",
        "generate",
        *args,
        "--redis-url",
        redis_url,
        "--events",
        "jsonl",
        "--summary-every-s",
        "0.5",
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def read_events(tmp: Path, exp: str) -> dict[str, list[dict[str, object]]]:
    per_member: dict[str, list[dict[str, object]]] = {}
    for f in (tmp / ".aftershock" / "runs" / exp).glob("events-*.jsonl"):
        per_member[f.stem] = [json.loads(line) for line in f.read_text().splitlines()]
    return per_member


async def test_three_processes_share_the_population(
    stack: EmbeddedStack, chat: ChatLikeServer, tmp_path: Path, procs: Processes
) -> None:
    (tmp_path / "run.yaml").write_text(
        RUN.format(address=chat.address, base_url=chat.base_url, duration=2)
    )
    code, out = await generate(
        procs,
        tmp_path,
        stack.redis_url,
        "run.yaml",
        "--processes",
        "3",
        "--experiment-id",
        "dist-3",
    )
    assert code == 0, out
    assert "all 3 generators done" in out
    members = read_events(tmp_path, "dist-3")
    assert len(members) == 3
    sessions: dict[str, set[str]] = {}
    first_connect = []
    for name, events in members.items():
        sessions[name] = {str(e["session"]) for e in events}
        starts = [int(str(e["ts_ns"])) for e in events if e["kind"] == "session.connect_start"]
        first_connect.append(min(starts))
        assert {e["experiment_id"] for e in events} == {"dist-3"}
        assert len({e["generator_id"] for e in events}) == 1
    shares = sorted(len(s) for s in sessions.values())
    assert shares == [4, 4, 4]
    assert set.union(*sessions.values()) == {f"acme-u{i}-s0" for i in range(7)} | {
        f"globex-u{i}-s0" for i in range(5)
    }
    # the start barrier: no member began its load phase before the agreed moment (how soon
    # after it each one woke depends on the machine's load, so only a loose bound is kept)
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        start_at = int(await client.get(prefix("dist-3") + "start_at"))
    finally:
        await client.aclose()
    assert min(first_connect) >= start_at
    assert max(first_connect) - start_at < 5_000_000_000
    # broadcasts cross members: sessions receive messages sent by other processes, intact
    by_session = defaultdict(set)
    for name, events in members.items():
        for e in events:
            by_session[str(e["session"])].add(name)
    origin_member = {s: next(iter(m)) for s, m in by_session.items()}
    crossed = [
        e
        for name, events in members.items()
        for e in events
        if e["kind"] == "session.receive" and origin_member[str(e["origin_session"])] != name
    ]
    assert crossed
    assert all(e["checksum_ok"] and e["origin_tenant"] == e["tenant"] for e in crossed)


async def test_a_stop_signal_ends_a_long_run(
    stack: EmbeddedStack, chat: ChatLikeServer, tmp_path: Path, procs: Processes
) -> None:
    (tmp_path / "run.yaml").write_text(
        RUN.format(address=chat.address, base_url=chat.base_url, duration=300)
    )
    run = asyncio.create_task(
        generate(
            procs,
            tmp_path,
            stack.redis_url,
            "run.yaml",
            "--processes",
            "3",
            "--experiment-id",
            "dist-s",
        )
    )
    async with Coordination(stack.redis_url, "dist-s") as coord:
        while len(await coord.heartbeats()) < 3:
            await asyncio.sleep(0.2)
        code, _ = await generate(
            procs, tmp_path, stack.redis_url, "--signal", "stop", "--experiment-id", "dist-s"
        )
        assert code == 0
        code, out = await asyncio.wait_for(run, 60)
        assert code == 0, out
        assert len(await coord.finished()) == 3


async def test_joining_a_full_or_missing_plan_is_refused(stack: EmbeddedStack) -> None:
    async with Coordination(stack.redis_url, "dist-full") as coord:
        plan = Plan(run_file={}, members=1, options={})
        await coord.publish_plan(plan)
        with pytest.raises(CoordinationError, match="already has a generator plan"):
            await coord.publish_plan(plan)
        assert await coord.join("g1", plan) == 0
        assert await coord.join("g1", plan) == 0
        with pytest.raises(CoordinationError, match="already has its 1 generators"):
            await coord.join("g2", plan)
    async with Coordination(stack.redis_url, "dist-none") as coord:
        with pytest.raises(CoordinationError, match="no generator plan"):
            await coord.wait_plan(timeout_s=0.2)
