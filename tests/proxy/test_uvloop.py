"""The data path on uvloop, as ``aftershock proxy serve`` runs it: client data sent before
the upstream answers is not lost, and the latency toxic holds its bounds on uvloop."""

from __future__ import annotations

import asyncio
import time

import uvloop

from injector.proxy import ProxyServer
from tests.proxy.conftest import _echo
from tests.proxy.helpers import Api, echo_rtt, read_exactly


async def _scenario() -> tuple[list[float], bytes]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]
    async with ProxyServer() as server, Api(server) as api:
        host, listen = await api.proxy("p", port)
        # Written at once on connect: arrives before the proxy's upstream dial completes.
        reader, writer = await asyncio.open_connection(host, listen)
        payload = b"early" * 1000
        writer.write(payload)
        early = await read_exactly(reader, len(payload))
        await api.toxic("p", type="latency", attributes={"latency": 20})
        rtts = [await echo_rtt(reader, writer) for _ in range(20)]
        writer.close()
    echo.close()
    return rtts, early


def test_uvloop_data_path_and_latency_bounds() -> None:
    started = time.perf_counter()
    rtts, early = uvloop.run(_scenario())
    assert early == b"early" * 1000
    assert all(0.018 <= rtt < 0.1 for rtt in rtts), rtts
    assert sorted(rtts)[len(rtts) // 2] < 0.025, rtts  # median within ~2 ms of 20 ms
    assert time.perf_counter() - started < 30
