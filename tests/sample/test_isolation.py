"""Tenant isolation: perfect without defects; the ``isolation`` defect leaks across tenants
when connections churn faster than the slot warm window."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import orjson
import pytest

from examples.chat import Bug, ChatConfig, ChatSystem, Defects
from examples.chat.slots import SlotTable
from tests.sample.conftest import connect, login, subscribe


async def _wait_sessions(chat: ChatSystem, count: int) -> None:
    assert chat.gateway is not None
    async with asyncio.timeout(30):
        while chat.gateway.session_count != count:
            await asyncio.sleep(0.01)


async def _drain(ws: aiohttp.ClientWebSocketResponse, quiet_s: float) -> list[str]:
    """Message data received until nothing arrives for ``quiet_s``."""
    got: list[str] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return got
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return got
        frame = orjson.loads(msg.data)
        if frame["op"] == "message":
            got.append(frame["data"])


@pytest.mark.parametrize("bugs", [set(), {"isolation"}])
async def test_recycled_slot_leaks_only_with_the_defect(
    redis_url: str, http: aiohttp.ClientSession, bugs: set[str]
) -> None:
    async with ChatSystem(redis_url, bugs=bugs, config=ChatConfig(slot_warm_s=30)) as chat:
        token_a = (await login(http, chat.gateway_url, "a"))["access_token"]
        token_b = (await login(http, chat.gateway_url, "b"))["access_token"]
        leaving = await connect(http, chat.ws_url, token_a)
        await subscribe(leaving, "general")
        await leaving.close()
        await _wait_sessions(chat, 0)

        victim = await connect(http, chat.ws_url, token_b)  # takes the warm slot
        await subscribe(victim, "general")
        sender = await connect(http, chat.ws_url, token_a)
        await subscribe(sender, "general")
        await sender.send_str('{"op":"publish","channel":"general","data":"secret-of-a"}')

        assert await _drain(sender, 0.3) == ["secret-of-a"]
        leaked = await _drain(victim, 0.3)
        assert leaked == (["secret-of-a"] if bugs else [])
        await victim.close()
        await sender.close()


async def _storm(chat: ChatSystem, http: aiohttp.ClientSession, rounds: int) -> tuple[int, int]:
    """Sessions of three tenants all drop and reconnect in shuffled order, each round; each
    publishes one message stamped with its tenant. Returns (foreign, own) deliveries."""
    tenants = [t for t in ("red", "green", "blue") for _ in range(8)]
    tokens = {t: (await login(http, chat.gateway_url, t))["access_token"] for t in set(tenants)}
    rng = random.Random(7)
    foreign = own = 0
    for r in range(rounds):
        rng.shuffle(tenants)
        sockets = [await connect(http, chat.ws_url, tokens[t]) for t in tenants]
        for ws in sockets:
            await subscribe(ws, "general")
        for i, (t, ws) in enumerate(zip(tenants, sockets, strict=True)):
            frame = {"op": "publish", "channel": "general", "data": f"{t}|{r}|{i}"}
            await ws.send_str(orjson.dumps(frame).decode())
        received = await asyncio.gather(*(_drain(ws, 0.25) for ws in sockets))
        for t, got in zip(tenants, received, strict=True):
            for data in got:
                if data.split("|")[0] == t:
                    own += 1
                else:
                    foreign += 1
        await asyncio.gather(*(ws.close() for ws in sockets))
        await _wait_sessions(chat, 0)
    return foreign, own


async def test_reconnect_storm_is_isolated_without_the_defect(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url) as chat:
        foreign, own = await _storm(chat, http, rounds=4)
    assert foreign == 0
    assert own == 4 * 3 * 8 * 8  # every session saw every message of its own tenant


async def test_reconnect_storm_leaks_across_tenants_with_the_defect(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url, bugs={Bug.ISOLATION}) as chat:
        foreign, _ = await _storm(chat, http, rounds=4)
    assert foreign > 0


async def test_isolation_defect_switched_at_run_time(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url) as chat:
        async with http.get(f"{chat.gateway_url}/admin/bugs") as r:
            assert (await r.json())["isolation"] is False
        async with http.post(f"{chat.gateway_url}/admin/bugs", json={"isolation": True}) as r:
            assert r.status == 200
            assert (await r.json())["isolation"] is True
        foreign, _ = await _storm(chat, http, rounds=3)
        assert foreign > 0
        async with http.post(f"{chat.gateway_url}/admin/bugs", json={"isolation": False}) as r:
            assert (await r.json())["isolation"] is False
        foreign, _ = await _storm(chat, http, rounds=2)
        assert foreign == 0
        for body in ({"isolation": "yes"}, {"leak": True}, [1]):
            async with http.post(f"{chat.gateway_url}/admin/bugs", json=body) as r:
                assert r.status == 400
                assert "bugs" in (await r.json())["error"]


def test_slot_table_reuses_warm_slots_only_under_the_defect() -> None:
    now = [0.0]
    defects = Defects({Bug.ISOLATION})
    table = SlotTable(defects, warm_s=1.0, clock=lambda: now[0])
    slot = table.acquire("a")
    table.release(slot)
    now[0] += 0.5  # fast churn: the slot is still warm
    assert table.acquire("b").tenant == "a"
    table.release(slot)
    now[0] += 1.5  # slow churn: cold slot, bound afresh
    assert table.acquire("b").tenant == "b"
    defects.set(Bug.ISOLATION, False)
    table.release(slot)
    now[0] += 0.1
    assert table.acquire("c").tenant == "c"
    assert table.size == 1
