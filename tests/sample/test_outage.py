"""Faults on the hops: a Redis outage and a lost message-service link cascade to clients,
and the system recovers when the hop comes back (later under ``slow_recovery``)."""

from __future__ import annotations

import asyncio

import aiohttp

from examples.chat import ChatConfig, ChatSystem
from tests.sample.conftest import connect, login, receive, redis_hostport, request, subscribe
from tests.sample.relay import Relay

FAST = ChatConfig(
    redis_timeout_s=0.5,
    redis_ping_interval_s=0.1,
    redis_dead_after_s=0.6,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
    link_heartbeat_s=0.2,
    link_timeout_s=1.0,
)


async def _expect_upstream_failure(ws: aiohttp.ClientWebSocketResponse) -> None:
    reply = await receive(ws)
    assert reply["op"] == "error"
    assert reply["code"] == "upstream_unavailable"
    closing = await ws.receive(timeout=30)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == 1011


async def _status(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str]]:
    async with http.get(f"{url}/healthz") as r:
        return r.status, await r.json()


async def _recovery_s(
    chat: ChatSystem, relay: Relay, http: aiohttp.ClientSession
) -> tuple[float, float]:
    """Cut the relay, wait for the gateway to see it, restore, and time the recovery; returns
    (seconds from the restore to healthy, seconds the relay was cut)."""
    loop = asyncio.get_running_loop()
    relay.cut()
    cut_at = loop.time()
    async with asyncio.timeout(30):
        while (await _status(http, chat.gateway_url))[0] != 503:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    relay.restore()
    restored_at = loop.time()
    await chat.wait_healthy(30)
    return loop.time() - restored_at, restored_at - cut_at


async def test_redis_outage_cascades_upstream_and_recovers(
    redis_relay: Relay, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(f"redis://{redis_relay.addr}/0", config=FAST) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        subscriber = await connect(http, chat.ws_url, token)
        await subscribe(subscriber, "general")
        publisher = await connect(http, chat.ws_url, token)

        redis_relay.cut()
        await _expect_upstream_failure(subscriber)  # subscriptions are dead: closed 1011
        status, body = await _status(http, chat.gateway_url)
        assert status == 503
        assert body == {"status": "unavailable", "message_service": "up", "redis": "down"}
        async with http.get(chat.ws_url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 503
        # Echo does not need Redis and still works; publish fails and closes.
        assert await request(publisher, {"op": "echo", "data": "e"}) == {"op": "echo", "data": "e"}
        await publisher.send_str('{"op":"publish","channel":"general","data":"lost"}')
        await _expect_upstream_failure(publisher)

        redis_relay.restore()
        await chat.wait_healthy(30)
        again = await connect(http, chat.ws_url, token)
        await subscribe(again, "general")
        await again.send_str('{"op":"publish","channel":"general","data":"back"}')
        assert await receive(again) == {"op": "message", "channel": "general", "data": "back"}
        await again.close()


async def test_slow_recovery_delays_reconnecting_to_redis(
    redis_relay: Relay, http: aiohttp.ClientSession
) -> None:
    pause_s = 3.0  # well above a prompt recovery, even on a busy machine
    config = FAST.model_copy(update={"slow_recovery_s": pause_s})
    url = f"redis://{redis_relay.addr}/0"
    async with ChatSystem(url, config=config) as healthy_chat:
        normal_s, _ = await _recovery_s(healthy_chat, redis_relay, http)
    async with ChatSystem(url, config=config, bugs={"slow_recovery"}) as buggy_chat:
        slow_s, down_s = await _recovery_s(buggy_chat, redis_relay, http)
        # Switched off at run time, recovery is prompt again.
        async with http.post(
            f"{buggy_chat.gateway_url}/admin/bugs", json={"slow_recovery": False}
        ) as r:
            assert r.status == 200
            assert (await r.json())["slow_recovery"] is False
        off_s, _ = await _recovery_s(buggy_chat, redis_relay, http)
    assert normal_s < pause_s - 1.0, normal_s
    assert off_s < pause_s - 1.0, off_s
    # The pause runs from the loss, no earlier than the cut, down_s before the restore.
    assert slow_s >= pause_s - down_s - 0.05, (slow_s, down_s)


async def test_slow_recovery_switched_on_at_run_time(
    redis_relay: Relay, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(f"redis://{redis_relay.addr}/0", config=FAST) as chat:
        async with http.post(
            f"{chat.gateway_url}/admin/bugs", json={"slow_recovery": True, "slow_recovery_s": 1.2}
        ) as r:
            assert r.status == 200
            state = await r.json()
        assert state["slow_recovery"] is True
        assert state["slow_recovery_s"] == 1.2
        recovery_s, down_s = await _recovery_s(chat, redis_relay, http)
        assert recovery_s >= 1.2 - down_s - 0.05, (recovery_s, down_s)


async def test_message_link_outage_cascades_and_recovers(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with (
        Relay() as relay,
        ChatSystem(redis_url, message_addr=relay.addr, config=FAST, wait_ready=False) as chat,
    ):
        relay.upstream = chat.message_addr
        await chat.wait_healthy(30)
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        ws = await connect(http, chat.ws_url, token)
        assert await request(ws, {"op": "echo", "data": "1"}) == {"op": "echo", "data": "1"}

        relay.cut()
        await _expect_upstream_failure(ws)  # every session goes: closed 1011
        status, body = await _status(http, chat.gateway_url)
        assert status == 503
        assert body["message_service"] == "down"

        relay.restore()
        await chat.wait_healthy(30)
        ws = await connect(http, chat.ws_url, token)
        assert await request(ws, {"op": "echo", "data": "2"}) == {"op": "echo", "data": "2"}
        await ws.close()


async def test_redis_down_at_start_then_up(http: aiohttp.ClientSession, redis_url: str) -> None:
    relay = Relay()
    async with relay, ChatSystem(f"redis://{relay.addr}/0", config=FAST, wait_ready=False) as chat:
        await asyncio.sleep(0.3)
        assert (await _status(http, chat.gateway_url))[0] == 503
        relay.upstream = redis_hostport(redis_url)
        await chat.wait_healthy(30)


async def test_a_stalled_redis_is_taken_as_down(
    redis_relay: Relay, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(f"redis://{redis_relay.addr}/0", config=FAST) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        ws = await connect(http, chat.ws_url, token)
        await subscribe(ws, "general")
        loop = asyncio.get_running_loop()
        started = loop.time()
        redis_relay.stall()  # connections stay open; nothing comes back
        await _expect_upstream_failure(ws)
        assert loop.time() - started < 3.0
        assert (await _status(http, chat.gateway_url))[0] == 503
        redis_relay.restore()
        await chat.wait_healthy(30)
