"""Each standard toxic measured on real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
import time
from typing import TYPE_CHECKING

import pytest

from tests.proxy.conftest import closed_port
from tests.proxy.helpers import Api, echo_rtt, read_exactly

if TYPE_CHECKING:
    from injector.proxy import ProxyServer


async def test_noop_and_plain_forwarding(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="noop")
        reader, writer = await asyncio.open_connection(host, port)
        payload = bytes(range(256)) * 1000
        writer.write(payload)
        await writer.drain()
        assert await read_exactly(reader, len(payload)) == payload
        writer.close()


async def test_latency_delays_each_direction(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.05
        await api.toxic("p", type="latency", attributes={"latency": 60})
        await api.toxic("p", type="latency", stream="upstream", attributes={"latency": 40})
        # Toxics apply at once to the open connection.
        rtts = [await echo_rtt(reader, writer) for _ in range(3)]
        assert all(0.098 <= rtt < 0.2 for rtt in rtts), rtts
        writer.close()


async def test_latency_jitter_spreads_within_bounds(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="latency", attributes={"latency": 50, "jitter": 30})
        reader, writer = await asyncio.open_connection(host, port)
        rtts = [await echo_rtt(reader, writer) for _ in range(12)]
        assert all(0.019 <= rtt < 0.15 for rtt in rtts), rtts
        assert max(rtts) - min(rtts) > 0.01, rtts
        writer.close()


async def test_removal_flushes_held_data_without_loss(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="latency", attributes={"latency": 2000})
        reader, writer = await asyncio.open_connection(host, port)
        payload = b"x" * 100_000
        started = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        await asyncio.sleep(0.1)
        await api.delete_toxic("p", "latency_downstream")
        assert await read_exactly(reader, len(payload)) == payload
        assert time.perf_counter() - started < 1.8  # not the 2 s latency
        writer.close()


async def test_bandwidth_paces_to_rate(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="bandwidth", attributes={"rate": 200})  # 200 KB/s
        reader, writer = await asyncio.open_connection(host, port)
        payload = b"b" * 100_000
        started = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        assert await read_exactly(reader, len(payload)) == payload
        elapsed = time.perf_counter() - started
        assert 0.45 <= elapsed < 1.5, elapsed  # 100 KB at 200 KB/s = 0.5 s
        writer.close()


async def test_slow_close_delays_the_close(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="slow_close", attributes={"delay": 250})
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.2  # data is not delayed (by 250 ms)
        started = time.perf_counter()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert (
            0.24 <= time.perf_counter() - started < 1.6
        )  # upper bounds leave a busy machine's scheduling room
        writer.close()


async def test_timeout_swallows_data_then_closes(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="timeout", attributes={"timeout": 200})
        reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert (
            0.19 <= time.perf_counter() - started < 1.5
        )  # upper bounds leave a busy machine's scheduling room
        writer.close()


async def test_timeout_is_an_idle_timeout(server: ProxyServer, echo_port: int) -> None:
    """Every chunk in the toxic's direction restarts its clock (as Toxiproxy's does): a client
    that keeps sending stays open well past the timeout, then closes one timeout after its
    last chunk."""
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="timeout", stream="upstream", attributes={"timeout": 1000})
        reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        while True:
            writer.write(b"x")
            await writer.drain()
            last = time.perf_counter()
            if last - started > 2.5:
                break
            await asyncio.sleep(0.1)
            assert not reader.at_eof(), "closed while data kept coming"
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.perf_counter() - last >= 0.95
        writer.close()


async def test_timeout_zero_holds_until_removed_then_closes(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="timeout", attributes={"timeout": 0})
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"hello")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        await api.delete_toxic("p", "timeout_downstream")
        # Removing a timeout closes the connections it held (and the held data stays lost).
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_reset_peer_sends_rst(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="reset_peer", stream="upstream", attributes={"timeout": 100})
        reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        writer.write(b"hello")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        assert (
            0.09 <= time.perf_counter() - started < 1.5
        )  # upper bounds leave a busy machine's scheduling room
        writer.close()


async def test_slicer_splits_into_small_delayed_pieces(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic(
            "p",
            type="slicer",
            attributes={"average_size": 10, "size_variation": 4, "delay": 5000},
        )
        reader, writer = await asyncio.open_connection(host, port)
        payload = bytes(range(200))
        started = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        pieces = []
        received = b""
        while len(received) < len(payload):
            chunk = await asyncio.wait_for(reader.read(1000), 5)
            pieces.append(chunk)
            received += chunk
        assert received == payload
        # ~20 pieces of 6..14 bytes, 5 ms apart: at least ~90 ms in all, and many reads.
        assert time.perf_counter() - started >= 0.08
        assert len(pieces) >= 8
        assert max(len(p) for p in pieces) <= 14 * 3
        writer.close()


async def test_limit_data_closes_after_the_limit(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="limit_data", attributes={"bytes": 10})
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"0123456789abcdefghij")
        assert await asyncio.wait_for(reader.read(), 5) == b"0123456789"
        writer.close()


async def test_toxicity_zero_never_applies_and_is_drawn_per_connection(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="latency", toxicity=0, attributes={"latency": 500})
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.1
        writer.close()
        await api.client.post("/proxies/p/toxics/latency_downstream", json={"toxicity": 0.5})
        await api.client.post(
            "/proxies/p/toxics/latency_downstream", json={"attributes": {"latency": 150}}
        )
        slow = 0
        for _ in range(20):
            reader, writer = await asyncio.open_connection(host, port)
            rtts = [await echo_rtt(reader, writer) for _ in range(2)]
            # One draw per connection and direction: both messages share the same fate.
            assert (rtts[0] > 0.14) == (rtts[1] > 0.14), rtts
            slow += rtts[0] > 0.14
            writer.close()
        assert 0 < slow < 20, slow  # all-or-nothing has probability 2e-6


async def test_disable_closes_connections_and_refuses_new(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.1
        await api.client.post("/proxies/p", json={"enabled": False})
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)
        await api.client.post("/proxies/p", json={"enabled": True})
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.1
        writer.close()


async def test_dead_upstream_closes_the_client(server: ProxyServer) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("dead", closed_port())
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # The server keeps serving.
        assert (await api.client.get("/proxies/dead")).status_code == 200


async def test_changing_upstream_drops_connections_and_uses_the_new_one(
    server: ProxyServer, echo_port: int
) -> None:
    other = await asyncio.start_server(_greeter, "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="latency", attributes={"latency": 1})
        reader, writer = await asyncio.open_connection(host, port)
        assert await echo_rtt(reader, writer) < 0.1
        response = await api.client.post("/proxies/p", json={"upstream": f"127.0.0.1:{other_port}"})
        assert response.json()["listen"] == f"{host}:{port}"
        assert response.json()["toxics"][0]["name"] == "latency_downstream"  # toxics survive
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the old connection dropped
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        writer.close()
    other.close()


async def _greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello")
    await writer.drain()
    await reader.read()
    writer.close()


async def test_limit_data_zero_closes_at_once(server: ProxyServer, echo_port: int) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="limit_data", stream="upstream")
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_half_close_keeps_the_other_direction_open(
    server: ProxyServer, echo_port: int
) -> None:
    async with Api(server) as api:
        host, port = await api.proxy("p", echo_port)
        await api.toxic("p", type="latency", attributes={"latency": 50})
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"last words")
        writer.write_eof()  # the reply still comes back, after the latency
        assert await asyncio.wait_for(reader.read(), 5) == b"last words"
        writer.close()


async def test_removing_a_toxic_that_holds_a_close_for_a_reset_client(server: ProxyServer) -> None:
    """A slow_close toxic holds the upstream's close; meanwhile the client resets its socket
    and the proxy has not read the reset yet (its reading of the client is paused, as flow
    control pauses it). Removing the toxic passes the close on to a socket that is no longer
    connected (ENOTCONN): the removal still succeeds and the proxy keeps serving."""

    async def close_at_once(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    upstream = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    try:
        async with Api(server) as api:
            host, port = await api.proxy("p", upstream.sockets[0].getsockname()[1])
            await api.toxic("p", type="slow_close", attributes={"delay": 60_000})
            client = socket.create_connection((host, port))
            proxy = server.proxies["p"]
            async with asyncio.timeout(10):  # accepted and dialled; the upstream closed
                while not any(c.down.stages and c.up.sink for c in proxy.connections.values()):
                    await asyncio.sleep(0.01)
            (conn,) = proxy.connections.values()
            transport = conn.client_side.transport
            assert transport is not None
            transport.pause_reading()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset
            await asyncio.sleep(0.2)  # the proxy's socket has it; the proxy has not read it
            assert not transport.is_closing()
            await api.delete_toxic("p", "slow_close_downstream")  # 204, not a 500
            async with asyncio.timeout(10):
                while proxy.connections:
                    await asyncio.sleep(0.01)
            # and the proxy still proxies: the upstream's close comes through at once
            reader, writer = await asyncio.open_connection(host, port)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
    finally:
        upstream.close()
        await upstream.wait_closed()


async def test_a_connection_accepted_as_its_proxy_stops_is_closed(
    server: ProxyServer, echo_port: int
) -> None:
    """A client connects and the proxy is stopped (disabled, deleted) a few loop iterations
    later, whatever the count: the client's connection is closed, none is left open or
    uncounted (asyncio's own server dropped, unclosed, one accepted in the iteration before
    it closed)."""
    loop = asyncio.get_running_loop()
    async with Api(server) as api:
        for yields in range(8):
            name = f"p{yields}"
            host, port = await api.proxy(name, echo_port)
            proxy = server.proxies[name]
            client = socket.create_connection((host, port))  # the kernel accepts at once
            client.setblocking(False)
            try:
                for _ in range(yields):
                    await asyncio.sleep(0)
                proxy.stop()
                with contextlib.suppress(ConnectionError):  # reset, if never accepted
                    got = await asyncio.wait_for(loop.sock_recv(client, 1), 10)
                    assert got == b"", yields  # closed by the proxy
                assert proxy.connections == {}, yields
            finally:
                client.close()
    gc.collect()  # an unclosed socket would warn here
