"""The PyPI ``toxiproxy-python`` client, unchanged, against our server: every call it makes."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.proxy.conftest import ThreadedServer, closed_port

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def client(threaded_server: ThreadedServer) -> Iterator[Toxiproxy]:
    toxiproxy = Toxiproxy()
    toxiproxy.update_api_consumer("127.0.0.1", threaded_server.port)
    yield toxiproxy
    toxiproxy.update_api_consumer("127.0.0.1", 8474)


def roundtrip(listen: str, payload: bytes = b"ping") -> tuple[bytes, float]:
    host, port = listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.perf_counter()
        sock.sendall(payload)
        data = b""
        while len(data) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data, time.perf_counter() - started


def test_server_running_and_version(client: Toxiproxy) -> None:
    assert client.running() is True
    assert client.version().startswith(b'{"version": "2.')


def test_proxy_lifecycle_through_the_client(
    client: Toxiproxy, threaded_server: ThreadedServer
) -> None:
    upstream = f"127.0.0.1:{threaded_server.echo_port}"
    proxy = client.create(upstream=upstream, name="echo")
    assert proxy.name == "echo"
    assert proxy.upstream == upstream
    assert proxy.enabled is True
    assert proxy.listen.startswith("127.0.0.1:")
    assert roundtrip(proxy.listen)[0] == b"ping"
    assert set(client.proxies()) == {"echo"}
    assert client.get_proxy("echo").listen == proxy.listen
    assert client.get_proxy("missing") is None
    with pytest.raises(ProxyExists):
        client.create(upstream=upstream, name="echo")
    with pytest.raises(ProxyExists):  # the server's own 409, not the client's pre-check
        APIConsumer.post("/proxies", json={"name": "echo", "upstream": upstream})

    proxy.add_toxic(type="latency", attributes={"latency": 150})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream"}
    toxic = proxy.get_toxic("latency_downstream")
    assert (toxic.type, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1)
    assert toxic.attributes == {"latency": 150, "jitter": 0}
    data, elapsed = roundtrip(proxy.listen)
    assert data == b"ping"
    assert 0.14 <= elapsed < 1.6  # upper bounds leave a busy machine's scheduling room
    proxy.add_toxic(name="slow_up", type="bandwidth", stream="upstream", attributes={"rate": 1000})
    assert set(proxy.toxics()) == {"latency_downstream", "slow_up"}
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="nonexistent")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", name="x", stream="sideways")
    assert proxy.destroy_toxic("latency_downstream") is True
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")
    assert proxy.get_toxic("latency_downstream") is None

    proxy.disable()
    assert client.get_proxy("echo").enabled is False
    host, port = proxy.listen.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2)
    proxy.enable()
    assert roundtrip(proxy.listen)[0] == b"ping"
    with proxy.down():
        assert client.get_proxy("echo").enabled is False
    assert client.get_proxy("echo").enabled is True

    assert client.reset() is True
    assert proxy.toxics() == {}
    assert proxy.destroy() is True
    with pytest.raises(NotFound):
        proxy.destroy()
    assert client.proxies() == {}


def test_populate_and_destroy_all(client: Toxiproxy) -> None:
    specs = [
        {"name": "one", "upstream": f"127.0.0.1:{closed_port()}", "listen": "127.0.0.1:0"},
        {"name": "two", "upstream": f"127.0.0.1:{closed_port()}", "listen": "127.0.0.1:0"},
    ]
    created = client.populate(specs)
    assert sorted(p.name for p in created) == ["one", "two"]
    assert set(client.proxies()) == {"one", "two"}
    client.destroy_all()
    assert client.proxies() == {}


def test_not_found_errors(client: Toxiproxy) -> None:
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/ghost")
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/ghost/toxics")
    with pytest.raises(InvalidToxic):
        APIConsumer.post("/proxies", data="{")
