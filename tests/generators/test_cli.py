"""``aftershock generate``: a run publishing every event to Kafka, and bad files refused clearly."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import statistics
import sys
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from spine.eventlog.reader import EventReader
from tests.reading import read_events

if TYPE_CHECKING:
    from pathlib import Path

    from spine.stack import EmbeddedStack
    from tests.generators.servers import ChatLikeServer, TcpEcho
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
    duration_s: 2
    ramp: {{shape: linear, ramp_s: 0.5}}
    auth: {{base_url: "{base_url}"}}
    tenants:
      - {{name: acme, users: 3}}
      - {{name: globex, users: 3}}
    script:
      - do: connect
      - do: subscribe
      - do: send
        rate_per_s: 20
        expect: broadcast
      - do: disconnect
"""


async def cli(
    procs: Processes, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    proc = await procs.exec(
        sys.executable,
        "-m",
        "aftershock.cli.main",
        "generate",
        *args,
        cwd=tmp,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_every_event_reaches_kafka(
    stack: EmbeddedStack, chat: ChatLikeServer, tmp_path: Path, procs: Processes
) -> None:
    topic = f"gen-events-{uuid.uuid4().hex[:8]}"
    await stack.create_topics([topic])
    (tmp_path / "run.yaml").write_text(RUN.format(address=chat.address, base_url=chat.base_url))
    code, out = await cli(
        procs,
        tmp_path,
        "run.yaml",
        "--experiment-id",
        "cli-kafka",
        "--kafka-bootstrap",
        stack.kafka_bootstrap,
        "--summary-every-s",
        "0.5",
        env={"AFTERSHOCK_TOPIC_EVENTS": topic},
    )
    assert code == 0, out
    match = re.search(r"kafka: emitted=(\d+) sent=(\d+) in_spool=(\d+)", out.splitlines()[-2])
    assert match, out
    emitted, sent, in_spool = map(int, match.groups())
    assert emitted == sent
    assert in_spool == 0
    assert emitted > 100
    async with EventReader(stack.kafka_bootstrap, topic, deadletter_topic=None) as reader:
        events = await read_events(reader, emitted, then_idle_s=2)
    assert len(events) == emitted
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == {
        "session.connect_start",
        "session.connected",
        "session.subscribed",
        "session.send",
        "session.receive",
        "session.disconnect",
    }
    assert {e.experiment_id for e in events} == {"cli-kafka"}
    # spans went to the JSONL file of the run
    spans = (tmp_path / ".aftershock" / "runs" / "cli-kafka" / "spans.jsonl").read_text()
    names = Counter(json.loads(line)["name"] for line in spans.splitlines())
    assert names["session"] == 6


async def test_a_bad_file_is_refused_with_the_place_named(tmp_path: Path, procs: Processes) -> None:
    (tmp_path / "bad.yaml").write_text(
        RUN.format(address="127.0.0.1:9", base_url="http://127.0.0.1:9").replace(
            "rate_per_s: 20", "rate_per_s: -1"
        )
    )
    code, out = await cli(procs, tmp_path, "bad.yaml", "--events", "none")
    assert code == 2
    assert "line 18: load[0].script[2].rate_per_s: Input should be greater than 0" in out
    assert "Traceback" not in out
    code, out = await cli(procs, tmp_path, "missing.yaml", "--events", "none")
    assert code == 2
    assert "cannot read" in out
    (tmp_path / "latin1.yaml").write_bytes(b"targets:\n  - name: caf\xe9\n")
    code, out = await cli(procs, tmp_path, "latin1.yaml", "--events", "none")
    assert code == 2
    assert "latin1.yaml: invalid load profile file:\n  line 2: not UTF-8 text (byte 0xe9)" in out
    assert "Traceback" not in out


TICKED = """\
targets:
  - {{name: echo, upstream: "{address}", protocol: tcp}}
load:
  - target: echo
    duration_s: 1.5
    ramp: {{shape: constant}}
    tenants: [{{name: acme, users: 1}}]
    script:
      - do: connect
      - do: send
        rate_per_s: 50
        expect: echo
"""


async def test_the_send_tick_is_the_one_asked_for(
    tcp_echo: TcpEcho, tmp_path: Path, procs: Processes
) -> None:
    """A session due every 20 ms sends at most once per tick: with ``--tick-ms 100`` its sends
    are a tick apart (and it says it fell behind), with the default 5 ms tick about 20 ms."""
    (tmp_path / "run.yaml").write_text(TICKED.format(address=tcp_echo.address))

    async def send_gaps_s(*args: str) -> tuple[list[float], str]:
        events = tmp_path / f"events{len(args)}.jsonl"
        code, out = await cli(
            procs, tmp_path, "run.yaml", "--events", "jsonl", "--events-file", str(events), *args
        )
        assert code == 0, out
        monos = [
            e["mono_ns"] / 1e9
            for e in map(json.loads, events.read_text().splitlines())
            if e["kind"] == "session.send"
        ]
        return [b - a for a, b in itertools.pairwise(monos)], out

    gaps, out = await send_gaps_s("--tick-ms", "100")
    # 1.5 s of 100 ms ticks: at most 16 ticks (17 if the first lands at 0), one send each,
    # where 75 sends fall due.
    assert 5 <= len(gaps) + 1 <= 17, gaps
    assert statistics.median(gaps) >= 0.095, gaps
    assert "GENERATOR BEHIND" in out
    gaps, out = await send_gaps_s()
    assert statistics.median(gaps) < 0.05, gaps
    code, out = await cli(procs, tmp_path, "run.yaml", "--events", "none", "--tick-ms", "0")
    assert code == 2
    assert "--tick-ms" in out
