"""Fixtures for the injector's tests: the real fault proxy, a TCP echo upstream, Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from injector.controller import ToxiproxyController
from injector.proxy import ProxyServer
from spine.eventlog import MemorySink
from tests.loopback import close_accepted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    # Spans need real ids for events to carry trace context; the API alone gives none.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


@pytest.fixture(scope="session")
def redis_url(stack: Any) -> str:
    """Redis of the shared embedded stack; tests keep apart by experiment id."""
    return str(stack.redis_url)


class Echo:
    """A line echo server on 127.0.0.1 (the upstream behind the proxy)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.address = ""
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while line := await reader.readline():
                    writer.write(line)
                    await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    e = Echo()
    e.server = await asyncio.start_server(e._handle, "127.0.0.1", 0)
    host, port = e.server.sockets[0].getsockname()[:2]
    e.address = f"{host}:{port}"
    async with e.server:
        try:
            yield e
        finally:
            e.server.close()
            await close_accepted(e._writers)


@pytest.fixture
async def proxy_sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def proxy(proxy_sink: MemorySink) -> AsyncIterator[Any]:
    async with ProxyServer(host="127.0.0.1", port=0, sink=proxy_sink) as server:
        yield server


@pytest.fixture
def controller(proxy: Any) -> ToxiproxyController:
    return ToxiproxyController(proxy.api_url)


async def round_trip_ms(address: str, payload: bytes = b"ping\n", timeout_s: float = 5.0) -> float:
    """Connect, send one line, read it back; milliseconds taken. Raises on failure."""
    host, port = address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(payload)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    if line != payload:
        raise ConnectionError(f"echo returned {line!r}")
    return (loop.time() - t0) * 1000


def write_experiment(tmp_path: Path, doc: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(doc, indent=2))
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def plan(
    upstream: str,
    faults: list[dict[str, Any]],
    *,
    experiment_id: str = "exp-test",
    proxy_name: str = "echo",
    listen: str = "127.0.0.1:0",
    **extra: Any,
) -> dict[str, Any]:
    """A minimal experiment: one target fronted by a proxy, the given faults."""
    section: dict[str, Any] = {
        "name": "aftershock",
        "experiment_id": experiment_id,
        "targets": [{"name": "echo", "upstream": upstream, "proxy": proxy_name, "listen": listen}],
        "faults": faults,
    }
    section.update(extra.pop("section", {}))
    return {"title": f"test {experiment_id}", "extensions": [section], **extra}
