"""Free ports for servers that bind them a moment later: never in the range the kernel gives
outgoing connections (a client's connection could take such a port first on a busy host)."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from spine.localhost import ephemeral_ports, free_port


async def test_a_free_port_is_outside_the_ephemeral_range_and_a_server_binds_it() -> None:
    low, high = ephemeral_ports()
    for _ in range(20):
        port = free_port()
        assert 10_000 <= port <= 65535
        assert not low <= port <= high
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
        server.close()
        await server.wait_closed()


def test_outgoing_connections_never_take_the_port_chosen() -> None:
    """The race the choice avoids: between the choice and the server's bind, a host busy
    with connections hands out local ports; none of them is the one chosen."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)  # the kernel completes the connections; none is accepted
        clients = []
        try:
            for _ in range(200):
                s = socket.create_connection(listener.getsockname(), timeout=10)
                clients.append(s)
                assert s.getsockname()[1] != port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as late:
                late.bind(("127.0.0.1", port))  # still free for its server
        finally:
            for s in clients:
                s.close()


@settings(max_examples=40, deadline=None)
@given(st.integers(1024, 65535), st.integers(0, 65535))
def test_any_range_to_avoid_gives_a_bindable_port_outside_it_when_there_is_one(
    low: int, span: int
) -> None:
    high = min(65535, low + span)
    port = free_port(avoid=(low, high))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # free: a server could take it
    if low > 10_000 or high < 65535:  # some port from 10000 up lies outside
        assert not low <= port <= high
