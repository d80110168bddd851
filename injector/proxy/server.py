"""The embeddable fault proxy server: control API plus every proxy it manages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Self

from injector.proxy.allowlist import ListenAllowlist, UpstreamAllowlist
from injector.proxy.api import Api, prometheus_text
from injector.proxy.bodies import populate_input
from injector.proxy.collection import ProxyCollection
from injector.proxy.events import EventContext, EventEmitter
from injector.proxy.http import DEFAULT_MAX_BODY_BYTES, HttpServer
from spine import __version__
from spine.localhost import raise_descriptor_limit

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType

    from injector.proxy.proxy import Proxy
    from spine.eventlog import EventSink

log = logging.getLogger(__name__)


class ProxyServer:
    """A Toxiproxy-compatible fault proxy, as an async context manager.

    ::

        async with ProxyServer(sink=MemorySink()) as server:
            server.api_url   # "http://127.0.0.1:<port>"
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        sink: EventSink | None = None,
        upstream_allowlist: list[str] | tuple[str, ...] | None = None,
        token: str | None = None,
        *,
        connection_events: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        allow_any_upstream: bool = False,
        listen_allowlist: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if token is not None and not token.strip():
            raise ValueError("the API token is empty: give a token, or none to turn it off")
        self.host = host
        self.port = port
        self._tasks: set[asyncio.Task[None]] = set()
        self._emitter = EventEmitter(sink, connection_events=connection_events)
        self.collection = ProxyCollection(
            self._emitter,
            UpstreamAllowlist.parse(upstream_allowlist, allow_any=allow_any_upstream),
            self._spawn,
            ListenAllowlist.parse(listen_allowlist),
        )
        self._api = Api(
            self.collection,
            token,
            __version__,
            lambda: prometheus_text(self.collection),
            max_body_bytes,
        )
        self._http = HttpServer(self._api.handle, self._api.too_large, max_body_bytes)
        self._address: tuple[str, int] | None = None
        self._closing = False

    # The server owns its short tasks (upstream dials, lease re-enables) in a set, so that
    # closing can cancel those still in flight: a TaskGroup cannot be cancelled from outside
    # without cancelling the task that entered it.
    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        if self._closing:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def api_url(self) -> str:
        if self._address is None:
            raise RuntimeError("the proxy server is not running")
        host, port = self._address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def proxies(self) -> dict[str, Proxy]:
        return self.collection.proxies

    async def start(self) -> None:
        raise_descriptor_limit()
        try:
            self._address = await self._http.start(self.host, self.port)
        except BaseException:
            await self.aclose()
            raise

    async def populate(self, body: bytes) -> list[Proxy]:
        """Create proxies from a ``/populate`` document (as ``--config`` does)."""
        entries = populate_input(body)
        await self.collection.check_upstreams(e.upstream for e in entries)
        async with self.collection.lock:
            return await self.collection.populate(entries, EventContext())

    async def aclose(self) -> None:
        """Stop the API, every proxy and every connection. Idempotent."""
        if self._closing:
            return
        self._closing = True
        await self._http.aclose()
        await self.collection.aclose()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.aclose())
