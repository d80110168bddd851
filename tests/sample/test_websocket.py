"""The WebSocket protocol: echo, tenant-scoped fan-out, bad frames."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
import websockets

from examples.chat import ChatConfig, ChatSystem
from tests.sample.conftest import connect, login, receive, request, subscribe


async def test_echo_round_trips_through_message_service(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url) as chat:
        token = (await login(http, chat.gateway_url, "t1"))["access_token"]
        ws = await connect(http, chat.ws_url, token)
        for data in ["hello", "", "ünïcode ✓", "x" * 100_000, '{"op":"echo"}']:
            assert await request(ws, {"op": "echo", "data": data}) == {"op": "echo", "data": data}
        await ws.close()


async def test_publish_reaches_every_subscriber_of_the_tenant_and_no_other(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url) as chat:
        tokens = {t: (await login(http, chat.gateway_url, t))["access_token"] for t in "ab"}
        a = [await connect(http, chat.ws_url, tokens["a"]) for _ in range(4)]
        b = [await connect(http, chat.ws_url, tokens["b"]) for _ in range(3)]
        for ws in a[:3] + b:
            await subscribe(ws, "general")
        await subscribe(a[3], "other")  # same tenant, other channel

        for i in range(20):
            await a[0].send_str(
                orjson.dumps({"op": "publish", "channel": "general", "data": f"a{i}"}).decode()
            )
            await b[0].send_str(
                orjson.dumps({"op": "publish", "channel": "general", "data": f"b{i}"}).decode()
            )
        for ws in a[:3]:  # the sender included, in order
            got = [await receive(ws) for _ in range(20)]
            assert got == [
                {"op": "message", "channel": "general", "data": f"a{i}"} for i in range(20)
            ]
        for ws in b:
            got = [await receive(ws) for _ in range(20)]
            assert got == [
                {"op": "message", "channel": "general", "data": f"b{i}"} for i in range(20)
            ]
        for ws in [*a, *b]:
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.2)
        for ws in [*a, *b]:
            await ws.close()


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ("{", "bad_json", "not JSON"),
        ("[1, 2]", "bad_frame", "JSON object"),
        ('{"op": 3}', "bad_field", '"op"'),
        ('{"op": "dance"}', "unknown_op", "dance"),
        ('{"op": "echo"}', "bad_field", '"data"'),
        ('{"op": "echo", "data": 7}', "bad_field", '"data"'),
        ('{"op": "publish", "channel": "a:b", "data": "x"}', "bad_field", '"channel"'),
        ('{"op": "publish", "channel": "a\\n", "data": "x"}', "bad_field", '"channel"'),
        ('{"op": "subscribe", "channels": []}', "bad_field", '"channels"'),
        ('{"op": "subscribe", "channels": ["ok", 5]}', "bad_field", '"channels"[1]'),
    ],
)
async def test_bad_frames_get_an_error_and_the_session_goes_on(
    redis_url: str, http: aiohttp.ClientSession, frame: str, code: str, fragment: str
) -> None:
    async with ChatSystem(redis_url) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        ws = await connect(http, chat.ws_url, token)
        await ws.send_str(frame)
        reply = await receive(ws)
        assert reply["op"] == "error"
        assert reply["code"] == code
        assert fragment in str(reply["message"])
        await ws.send_bytes(b"\x00binary")
        assert (await receive(ws))["code"] == "bad_frame"
        assert await request(ws, {"op": "echo", "data": "alive"}) == {"op": "echo", "data": "alive"}
        await ws.close()


async def test_websockets_client_with_header_auth_and_traceparent(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        async with websockets.connect(chat.ws_url, additional_headers=headers) as ws:
            await ws.send('{"op":"subscribe","channels":["x"]}')
            assert orjson.loads(await ws.recv()) == {"op": "subscribed", "channels": ["x"]}
            await ws.send('{"op":"publish","channel":"x","data":"d"}')
            assert orjson.loads(await ws.recv()) == {"op": "message", "channel": "x", "data": "d"}


async def test_many_sessions_concurrently(redis_url: str, http: aiohttp.ClientSession) -> None:
    async with ChatSystem(redis_url) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        sockets = await asyncio.gather(*(connect(http, chat.ws_url, token) for _ in range(200)))

        async def echo(ws: aiohttp.ClientWebSocketResponse, i: int) -> None:
            for j in range(5):
                assert await request(ws, {"op": "echo", "data": f"{i}.{j}"}) == {
                    "op": "echo",
                    "data": f"{i}.{j}",
                }

        await asyncio.gather(*(echo(ws, i) for i, ws in enumerate(sockets)))
        assert chat.gateway is not None
        assert chat.gateway.session_count == 200
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_oversized_message_closes_with_1009(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url, config=ChatConfig(max_frame_bytes=4096)) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        ws = await connect(http, chat.ws_url, token)
        await ws.send_str(orjson.dumps({"op": "echo", "data": "x" * 5000}).decode())
        msg = await ws.receive(timeout=30)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1009
        # Other sessions are unaffected.
        other = await connect(http, chat.ws_url, token)
        assert await request(other, {"op": "echo", "data": "ok"}) == {"op": "echo", "data": "ok"}
        await other.close()


async def test_a_client_that_stops_reading_is_closed_with_1013(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ChatSystem(redis_url, config=ChatConfig(outbox_limit=8)) as chat:
        token = (await login(http, chat.gateway_url, "t"))["access_token"]
        stalled = await connect(http, chat.ws_url, token)
        await subscribe(stalled, "flood")
        sender = await connect(http, chat.ws_url, token)
        big = orjson.dumps({"op": "publish", "channel": "flood", "data": "x" * 60_000}).decode()
        for _ in range(400):  # ~24 MB, more than the socket buffers hold
            await sender.send_str(big)
        assert await request(sender, {"op": "echo", "data": "e"}) == {"op": "echo", "data": "e"}
        await asyncio.sleep(0.5)  # let the stalled session's outbox overflow
        received = 0
        async with asyncio.timeout(10):
            while (msg := await stalled.receive()).type is aiohttp.WSMsgType.TEXT:
                received += 1
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1013
        assert received < 400
        await sender.close()
