"""The controller against the real fault proxy: capabilities, operations and error mapping."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pytest

from injector.controller import ToxiproxyController
from injector.errors import (
    BadRequest,
    ControllerError,
    ProxyExists,
    ProxyNotFound,
    ServerUnreachable,
    ToxicExists,
    ToxicNotFound,
)

if TYPE_CHECKING:
    from .conftest import Echo


async def test_capabilities_of_the_fault_proxy(controller: ToxiproxyController) -> None:
    caps = await controller.capabilities()
    assert caps.server == "aftershock"
    assert {"corrupt", "drop", "latency"} <= caps.toxics
    assert caps.leases
    assert caps.match
    assert caps.lacks(frozenset({"toxic:corrupt", "match", "leases"})) == []
    assert caps.lacks(frozenset({"toxic:teleport"})) == ["toxic:teleport"]


async def test_assume_standard_offers_only_standard_toxics(proxy: Any) -> None:
    caps = await ToxiproxyController(proxy.api_url, assume_standard=True).capabilities()
    assert caps.server == "toxiproxy"
    assert "corrupt" not in caps.toxics
    assert caps.lacks(frozenset({"toxic:corrupt", "match", "leases"})) == [
        "leases",
        "match",
        "toxic:corrupt",
    ]


async def test_operations_and_errors_are_mapped(
    controller: ToxiproxyController, echo: Echo
) -> None:
    p = await controller.create_proxy("svc", echo.address, "127.0.0.1:0")
    assert p.enabled
    assert p.listen.startswith("127.0.0.1:")
    with pytest.raises(ProxyExists, match="proxy already exists"):
        await controller.create_proxy("svc", echo.address)
    with pytest.raises(ProxyNotFound, match="proxy not found"):
        await controller.get_proxy("nope")
    with pytest.raises(ProxyNotFound):
        await controller.add_toxic("nope", {"name": "t", "type": "latency"})
    t = await controller.add_toxic(
        "svc", {"name": "t", "type": "latency", "attributes": {"latency": 7}, "ttl_ms": 60_000}
    )
    assert (t.name, t.type, t.attributes["latency"], t.ttl_ms) == ("t", "latency", 7, 60_000)
    with pytest.raises(ToxicExists, match="toxic already exists"):
        await controller.add_toxic("svc", {"name": "t", "type": "latency"})
    with pytest.raises(BadRequest, match="invalid toxic type"):
        await controller.add_toxic("svc", {"name": "u", "type": "teleport"})
    await controller.renew_toxic("svc", "t", 30_000)
    await controller.remove_toxic("svc", "t")
    with pytest.raises(ToxicNotFound, match="toxic not found"):
        await controller.remove_toxic("svc", "t")
    off = await controller.update_proxy("svc", {"enabled": False, "ttl_ms": 60_000})
    assert not off.enabled
    await controller.renew_proxy("svc", 60_000)
    await controller.reset()
    assert (await controller.get_proxy("svc")).enabled
    await controller.delete_proxy("svc")
    assert await controller.list_proxies() == {}


async def test_unreachable_server_is_a_retriable_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        ctl = ToxiproxyController(f"http://127.0.0.1:{port}", timeout_s=1.0)
        with pytest.raises(ServerUnreachable) as info:
            await ctl.capabilities()
    assert info.value.retriable


def test_bad_url_is_refused() -> None:
    with pytest.raises(ControllerError, match="must be http://host:port"):
        ToxiproxyController("https://example.invalid")
