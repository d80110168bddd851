"""Small helpers for driving the proxy's data path from tests."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from injector.proxy import ProxyServer


class Api:
    def __init__(self, server: ProxyServer) -> None:
        self.client = httpx.AsyncClient(base_url=server.api_url, timeout=10)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def proxy(self, name: str, upstream_port: int, **extra: Any) -> tuple[str, int]:
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream_port}"}
        response = await self.client.post("/proxies", json={**body, **extra})
        assert response.status_code == 201, response.text
        host, port = response.json()["listen"].rsplit(":", 1)
        return host, int(port)

    async def toxic(self, proxy: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(f"/proxies/{proxy}/toxics", json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def delete_toxic(self, proxy: str, name: str) -> None:
        response = await self.client.delete(f"/proxies/{proxy}/toxics/{name}")
        assert response.status_code == 204, response.text


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 5) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def echo_rtt(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes = b"ping"
) -> float:
    started = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    assert await read_exactly(reader, len(payload)) == payload
    return time.perf_counter() - started
