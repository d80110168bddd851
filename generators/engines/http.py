"""HTTP engine: one keep-alive connection per session, requests drawn from a weighted mix.

``send`` queues a request; one worker per connection sends them in order over the kept-alive
connection (as a browser tab or API client would) and reports each response as a message with
its status and the ``seq`` it answers.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import TYPE_CHECKING

import httpx

from generators.engines.base import Closed, Connection, Endpoint, MessageHandler
from generators.errors import ConnectError, ConnectionLost
from schemas.events import Protocol as WireProtocol
from schemas.load import HttpRequestSpec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _HttpConnection:
    def __init__(
        self,
        client: httpx.AsyncClient,
        handler: MessageHandler,
        mix: Sequence[HttpRequestSpec],
        rng: random.Random,
    ) -> None:
        self._client = client
        self._handler = handler
        self._mix = list(mix)
        self._weights = [m.weight for m in mix]
        self._rng = rng
        self._queue: deque[tuple[str, int, str | None]] = deque()
        self._wake = asyncio.Event()
        self._open = True
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def is_open(self) -> bool:
        return self._open

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        if not self._open:
            raise ConnectionLost("HTTP client is closed")
        self._queue.append((data, seq, traceparent))
        self._wake.set()

    def set_header(self, name: str, value: str) -> None:
        self._client.headers[name] = value

    async def _run(self) -> None:
        closed = Closed("client", None, "")
        try:
            while True:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                data, seq, traceparent = self._queue.popleft()
                spec = self._rng.choices(self._mix, self._weights)[0]
                body = data.encode() if spec.method in _BODY_METHODS else None
                headers = {"traceparent": traceparent} if traceparent else None
                try:
                    resp = await self._client.request(
                        spec.method, spec.path, content=body, headers=headers
                    )
                except httpx.HTTPError as exc:
                    closed = Closed("error", None, f"{type(exc).__name__}: {exc}")
                    return
                self._handler.on_message(resp.text, resp.status_code, seq)
        finally:
            self._open = False
            self._handler.on_closed(closed)

    async def close(self, code: int = 1000) -> None:
        if self._worker.done():
            await self._client.aclose()
            return
        self._open = False
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            await self._client.aclose()


class HttpEngine:
    name = "http"
    protocol = WireProtocol.HTTP

    def __init__(self, mix: Sequence[HttpRequestSpec] = (), seed: int | None = None) -> None:
        self._mix = list(mix)
        self._rng = random.Random(seed)

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        base = Endpoint(endpoint.host, endpoint.port, "", endpoint.secure).url(
            "https" if endpoint.secure else "http"
        )
        mix = self._mix or [HttpRequestSpec(name="echo", method="POST", path=endpoint.path)]
        client = httpx.AsyncClient(
            base_url=base,
            headers=dict(headers),
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        try:
            # Opening the keep-alive connection is the "connect" of an HTTP session; any
            # response at all means the server is reachable.
            await client.get("/")
        except httpx.HTTPError as exc:
            await client.aclose()
            raise ConnectError(f"connect to {base} failed: {exc}") from exc
        rng = random.Random(self._rng.random())
        return _HttpConnection(client, handler, mix, rng)
