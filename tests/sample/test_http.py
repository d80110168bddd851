"""HTTP side of the gateway: auth flow with expiry and refresh, load endpoints, health."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from examples.chat import ChatConfig, ChatSystem
from tests.sample.conftest import login

if TYPE_CHECKING:
    import aiohttp


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_login_refresh_logout_and_expiry(redis_url: str, http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    config = ChatConfig(token_ttl_s=30, refresh_ttl_s=100)
    async with ChatSystem(redis_url, config=config, clock=clock) as chat:
        base = chat.gateway_url
        pair = await login(http, base, "acme", "alice")
        assert pair["expires_in_s"] == 30
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        async with http.post(f"{base}/api/echo", data=b"ping", headers=auth) as r:
            assert r.status == 200
            assert await r.read() == b"ping"

        clock.now += 31  # access token expired, refresh token still good
        async with http.post(f"{base}/api/echo", data=b"x", headers=auth) as r:
            assert r.status == 401
            assert "expired" in (await r.json())["error"]
        async with http.get(chat.ws_url, headers=auth) as r:
            assert r.status == 401

        async with http.post(
            f"{base}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ) as r:
            assert r.status == 200
            fresh = await r.json()
        assert fresh["access_token"] != pair["access_token"]
        # Refresh rotates: the old refresh token is spent.
        async with http.post(
            f"{base}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ) as r:
            assert r.status == 401

        auth = {"Authorization": f"Bearer {fresh['access_token']}"}
        async with http.post(f"{base}/auth/logout", headers=auth) as r:
            assert r.status == 204
        async with http.post(f"{base}/api/echo", data=b"x", headers=auth) as r:
            assert r.status == 401
        async with http.post(
            f"{base}/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
        ) as r:
            assert r.status == 401, "logout must revoke the refresh token too"

        other = await login(http, base, "acme", "bob")
        clock.now += 101
        async with http.post(
            f"{base}/auth/refresh", json={"refresh_token": other["refresh_token"]}
        ) as r:
            assert r.status == 401
            assert "expired" in (await r.json())["error"]


async def test_password_when_configured(redis_url: str, http: aiohttp.ClientSession) -> None:
    async with ChatSystem(redis_url, config=ChatConfig(password="s3cret")) as chat:
        body = {"tenant": "t", "user": "u", "password": "wrong"}
        async with http.post(f"{chat.gateway_url}/auth/login", json=body) as r:
            assert r.status == 401
        body["password"] = "s3cret"
        async with http.post(f"{chat.gateway_url}/auth/login", json=body) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"tenant": "a:b", "user": "u"}', "tenant"),
        (b'{"user": "u"}', "tenant"),
        (b'{"tenant": "a", "user": 5}', "user"),
        (b'{"tenant": "a", "user": "u", "role": "admin"}', "role"),
    ],
)
async def test_bad_login_bodies_are_400_naming_the_problem(
    redis_url: str, http: aiohttp.ClientSession, body: bytes, fragment: str
) -> None:
    async with ChatSystem(redis_url) as chat:
        async with http.post(f"{chat.gateway_url}/auth/login", data=body) as r:
            assert r.status == 400
            assert fragment in (await r.json())["error"]
        async with http.get(f"{chat.gateway_url}/healthz") as r:
            assert r.status == 200


async def test_items_health_and_missing_auth(redis_url: str, http: aiohttp.ClientSession) -> None:
    async with ChatSystem(redis_url) as chat:
        async with http.get(f"{chat.gateway_url}/api/items") as r:
            assert r.status == 200
            items = await r.json()
            assert isinstance(items, list)
            assert items
        async with http.get(f"{chat.gateway_url}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ok"
        async with http.post(f"{chat.gateway_url}/api/echo", data=b"x") as r:
            assert r.status == 401
        async with http.get(chat.ws_url) as r:
            assert r.status == 401
        async with http.get(f"{chat.ws_url}?token=bogus") as r:
            assert r.status == 401


async def test_shutdown_is_idempotent_and_a_failed_start_cleans_up(redis_url: str) -> None:
    chat = ChatSystem(redis_url)
    await chat.__aenter__()
    port = int(chat.gateway_url.rsplit(":", 1)[1])
    message_port = int(chat.message_addr.rsplit(":", 1)[1])
    await chat.aclose()
    await chat.aclose()
    # The ports are free again, and a start that fails (port taken) releases what it bound.
    async with ChatSystem(redis_url, gateway_port=port, message_port=message_port) as again:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await ChatSystem(redis_url, gateway_port=port, message_port=free_port).__aenter__()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", free_port))  # released by the failed start
        assert again.gateway is not None
        assert again.gateway.healthy
