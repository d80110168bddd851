"""The chat's Redis hop through Aftershock's own fault proxy: disabling the proxy and a
``timeout`` toxic both cascade to WebSocket clients, and removing the fault recovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import httpx

from examples.chat import ChatSystem
from injector.proxy import ProxyServer
from tests.sample.conftest import connect, login, receive, redis_hostport, subscribe
from tests.sample.test_outage import FAST

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def test_redis_faults_through_the_fault_proxy(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    async with ProxyServer() as proxy, httpx.AsyncClient(base_url=proxy.api_url) as api:
        r = await api.post(
            "/proxies",
            json={"name": "redis", "listen": "127.0.0.1:0", "upstream": redis_hostport(redis_url)},
        )
        assert r.status_code == 201, r.text
        listen = r.json()["listen"]
        async with ChatSystem(f"redis://{listen}/0", config=FAST) as chat:
            token = (await login(http, chat.gateway_url, "t"))["access_token"]

            async def fault_and_recover(
                inject: Callable[[], Awaitable[httpx.Response]],
                revert: Callable[[], Awaitable[httpx.Response]],
            ) -> None:
                ws = await connect(http, chat.ws_url, token)
                await subscribe(ws, "general")
                assert (await inject()).is_success
                error = await receive(ws, timeout_s=5)
                assert error["code"] == "upstream_unavailable"
                closing = await ws.receive(timeout=30)
                assert closing.type is aiohttp.WSMsgType.CLOSE
                assert closing.data == 1011
                async with http.get(f"{chat.gateway_url}/healthz") as h:
                    assert h.status == 503
                assert (await revert()).is_success
                await chat.wait_healthy(5)
                ws = await connect(http, chat.ws_url, token)
                await subscribe(ws, "general")
                await ws.send_str('{"op":"publish","channel":"general","data":"ok"}')
                assert await receive(ws) == {"op": "message", "channel": "general", "data": "ok"}
                await ws.close()

            await fault_and_recover(
                lambda: api.post("/proxies/redis", json={"enabled": False}),
                lambda: api.post("/proxies/redis", json={"enabled": True}),
            )
            await fault_and_recover(
                lambda: api.post(
                    "/proxies/redis/toxics",
                    json={"name": "stall", "type": "timeout", "attributes": {"timeout": 0}},
                ),
                lambda: api.delete("/proxies/redis/toxics/stall"),
            )
