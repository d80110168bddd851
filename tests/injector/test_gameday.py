"""The shipped game-day file, rehearsed 20x faster against the real chat sample.

Every hop of the chat system goes through the fault proxy: clients → gateway proxy → gateway →
message proxy → message service → redis proxy → Redis. Only the addresses in the file are
changed (to free ports); the plan runs as written, compressed in time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis.asyncio as aioredis
import yaml

from examples.chat import ChatSystem
from injector.executor import Executor, RunOptions
from injector.journal import FaultState
from injector.validate import load_experiment
from spine.eventlog import MemorySink

if TYPE_CHECKING:
    import pytest

    from injector.controller import ToxiproxyController

GAMEDAY = Path(__file__).parents[2] / "experiments" / "chat-gameday.yaml"
SCALE = 0.05


async def test_chat_gameday_rehearsal(
    tmp_path: Path,
    controller: ToxiproxyController,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_hostport = redis_url.split("//", 1)[1].split("/", 1)[0]
    redis_proxy = await controller.create_proxy("redis", redis_hostport, "127.0.0.1:0")
    # The message hop's upstream is known only once the system has started.
    message_proxy = await controller.create_proxy("message", "127.0.0.1:9", "127.0.0.1:0")
    async with ChatSystem(
        f"redis://{redis_proxy.listen}/0", message_addr=message_proxy.listen, wait_ready=False
    ) as chat:
        await controller.update_proxy("message", {"upstream": chat.message_addr})
        await chat.wait_healthy(30)
        gateway_hostport = chat.gateway_url.removeprefix("http://")
        gateway_proxy = await controller.create_proxy("gateway", gateway_hostport, "127.0.0.1:0")

        doc: dict[str, Any] = yaml.safe_load(GAMEDAY.read_text())
        section = doc["extensions"][0]
        real = {
            "gateway": (gateway_hostport, gateway_proxy.listen),
            "message": (chat.message_addr, message_proxy.listen),
            "redis": (redis_hostport, redis_proxy.listen),
        }
        for t in section["targets"]:
            t["upstream"], t["listen"] = real[t["name"]]
        for lp in section["load"]:
            lp["auth"]["base_url"] = chat.gateway_url
        path = tmp_path / "gameday.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        monkeypatch.setenv("CHAT_GATEWAY_URL", chat.gateway_url)

        sink = MemorySink()
        client = aioredis.Redis.from_url(redis_url)
        ex = Executor(
            load_experiment(path),
            controller,
            sink,
            RunOptions(redis=client, time_scale=SCALE, journal_path=tmp_path / "journal.json"),
        )
        health: list[tuple[float, int | None]] = []

        async def watch(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(timeout=0.5) as http:
                while not stop.is_set():
                    at = ex.timeline.offset_s()
                    try:
                        status: int | None = (
                            await http.get(f"{chat.gateway_url}/healthz")
                        ).status_code
                    except httpx.HTTPError:
                        status = None
                    health.append((at, status))
                    await asyncio.sleep(0.05)

        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(watch(stop))
                journal = await asyncio.wait_for(ex.run(), 30)
                stop.set()
                await watcher
        finally:
            await client.aclose()

        faults = {f.fault_id: f for f in journal.aftershock.faults}
        assert set(faults) == {
            "message-latency",
            "redis-outage",
            "message-corruption",
            "reconnect-storm",
        }
        assert {f.state for f in faults.values()} == {FaultState.REVERTED}
        for f in faults.values():  # (the precision test proper is in test_executor.py)
            assert f.jitter_ms is not None
            assert f.jitter_ms < 1000  # (a busy machine's scheduling; bench_injector)
        # The Redis outage was felt at the gateway, and it recovered after.
        outage = faults["redis-outage"]
        assert outage.injected_at_s is not None
        assert outage.reverted_at_s is not None
        # (the gateway learns of it from the message service: allow it half a second more)
        end = outage.reverted_at_s + 0.5
        during = [s for at, s in health if outage.injected_at_s + 0.1 < at < end]
        assert during
        assert any(s != 200 for s in during), health
        await chat.wait_healthy(30)
        # Hypothesis evaluated before, during and after; nothing left on any proxy.
        assert journal.steady_states.before is not None
        assert journal.steady_states.before.steady_state_met
        assert journal.steady_states.during
        for name in ("gateway", "message", "redis"):
            info = await controller.get_proxy(name)
            assert info.enabled
            assert info.toxics == ()
        assert [e.fault_id for e in sink.events if e.kind == "fault.toxic_added"] == [
            "message-latency",
            "message-corruption",
            "reconnect-storm",
        ]
