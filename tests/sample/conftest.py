"""Fixtures for the chat sample: the embedded Valkey, TCP relays to cut hops, helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.sample.relay import Relay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from spine.stack import EmbeddedStack


@pytest.fixture
def redis_url(stack: EmbeddedStack) -> str:
    """The shared embedded Valkey (a real Redis-protocol server)."""
    return stack.redis_url


def redis_hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


@pytest.fixture
async def redis_relay(redis_url: str) -> AsyncIterator[Relay]:
    """A cuttable hop in front of Valkey; give ``f"redis://{relay.addr}/0"`` to the system."""
    async with Relay(redis_hostport(redis_url)) as relay:
        yield relay


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def login(
    http: aiohttp.ClientSession, base_url: str, tenant: str, user: str = "u"
) -> dict[str, object]:
    async with http.post(f"{base_url}/auth/login", json={"tenant": tenant, "user": user}) as r:
        assert r.status == 200, await r.text()
        body: dict[str, object] = await r.json()
        return body


async def connect(
    http: aiohttp.ClientSession, ws_url: str, token: object
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})


async def request(
    ws: aiohttp.ClientWebSocketResponse, frame: dict[str, object]
) -> dict[str, object]:
    await ws.send_str(orjson.dumps(frame).decode())
    return await receive(ws)


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 3.0) -> dict[str, object]:
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    value: dict[str, object] = orjson.loads(msg.data)
    return value


async def subscribe(ws: aiohttp.ClientWebSocketResponse, *channels: str) -> None:
    reply = await request(ws, {"op": "subscribe", "channels": list(channels)})
    assert reply == {"op": "subscribed", "channels": list(channels)}
