"""Small servers speaking the sample chat protocol, for tests that need precise control.

``ChatLikeServer`` serves ``/auth/*``, ``/api/echo``, ``/healthz`` and a ``/ws`` endpoint with
subscribe / echo / publish per tenant, plus switches that force faults the stamps must catch:
``leak_to`` (deliver every publish also to another tenant's sessions) and ``corrupt_echo``
(flip one character of echoed data). ``TcpEcho`` is a line / length-prefixed echo server;
``HttpEcho`` an HTTP/1.1 echo server in threads, which logs what it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import LineServer


@dataclass
class Calls:
    logins: list[tuple[str, float]] = field(default_factory=list)
    refreshes: list[tuple[str, float]] = field(default_factory=list)
    logouts: list[str] = field(default_factory=list)
    ws_headers: list[dict[str, str]] = field(default_factory=list)
    api_traceparents: list[str] = field(default_factory=list)
    api_bodies: list[tuple[str, int]] = field(default_factory=list)
    """(method, bytes of the request body) of each /api request, as the server read it."""


class ChatLikeServer:
    def __init__(self, token_ttl_s: float = 300.0, clock: Any = None) -> None:
        self.token_ttl_s = token_ttl_s
        self.clock = clock
        self.calls = Calls()
        self.leak_to: str | None = None
        self.leaked: Counter[tuple[str, str]] = Counter()
        """Cross-tenant deliveries made (``leak_to``), by (origin tenant, victim tenant)."""
        self.delivered = 0
        """WebSocket messages carrying a client's data sent (echoes and channel messages)."""
        self.corrupt_echo = False
        self.corrupt_at = 10
        """Which character of an echo's data ``corrupt_echo`` changes."""
        self.corrupt_channel = False
        """Change the first character of the channel a publish is delivered on."""
        self.fail_login = False
        self.max_sockets: int | None = None
        """Above this many open WebSockets, echoes are answered with an error (overload)."""
        self._ids = itertools.count(1)
        self._tokens: dict[str, tuple[str, str]] = {}  # access -> (tenant, user)
        self._refresh: dict[str, tuple[str, str]] = {}
        self._subs: dict[tuple[str, str], set[web.WebSocketResponse]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _now(self) -> float:
        return self.clock.monotonic() if self.clock is not None else 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> ChatLikeServer:
        app = web.Application()
        app.router.add_post("/auth/login", self._login)
        app.router.add_post("/auth/refresh", self._refresh_h)
        app.router.add_post("/auth/logout", self._logout)
        app.router.add_post("/api/echo", self._echo)
        app.router.add_get("/api/items", self._items)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/", self._health)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def kick_all(self, code: int = 1011) -> None:
        """Close every WebSocket from the server side (an upstream outage)."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"upstream down")

    def _issue(self, tenant: str, user: str) -> dict[str, Any]:
        n = next(self._ids)
        access, refresh = f"a{n}", f"r{n}"
        self._tokens[access] = (tenant, user)
        self._refresh[refresh] = (tenant, user)
        return {"access_token": access, "refresh_token": refresh, "expires_in_s": self.token_ttl_s}

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.fail_login:
            return web.json_response({"error": "login disabled"}, status=503)
        self.calls.logins.append((body["user"], self._now()))
        return web.json_response(self._issue(body["tenant"], body["user"]))

    async def _refresh_h(self, request: web.Request) -> web.Response:
        body = await request.json()
        who = self._refresh.pop(body.get("refresh_token", ""), None)
        if who is None:
            return web.json_response({"error": "bad refresh token"}, status=401)
        self.calls.refreshes.append((who[1], self._now()))
        return web.json_response(self._issue(*who))

    def _auth(self, request: web.Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") or request.query.get("token", "")
        return self._tokens.get(token)

    async def _logout(self, request: web.Request) -> web.Response:
        who = self._auth(request)
        if who is None:
            return web.json_response({"error": "bad token"}, status=401)
        self.calls.logouts.append(who[1])
        return web.Response(status=204)

    async def _echo(self, request: web.Request) -> web.Response:
        self.calls.api_traceparents.append(request.headers.get("traceparent", ""))
        body = await request.read()
        self.calls.api_bodies.append((request.method, len(body)))
        return web.Response(body=body, status=200)

    async def _items(self, request: web.Request) -> web.Response:
        self.calls.api_bodies.append((request.method, len(await request.read())))
        return web.json_response([{"id": 1}, {"id": 2}])

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        who = self._auth(request)
        self.calls.ws_headers.append(dict(request.headers))
        tenant = who[0] if who else request.query.get("tenant", "anon")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        mine: list[tuple[str, str]] = []
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                import json

                m = json.loads(msg.data)
                op = m.get("op")
                if op == "subscribe":
                    for ch in m["channels"]:
                        key = (tenant, ch)
                        self._subs.setdefault(key, set()).add(ws)
                        mine.append(key)
                    await ws.send_str(json.dumps({"op": "subscribed", "channels": m["channels"]}))
                elif op == "echo" and self.max_sockets and len(self._sockets) > self.max_sockets:
                    await ws.send_str(json.dumps({"op": "error", "code": "overloaded"}))
                elif op == "echo":
                    data = m["data"]
                    if self.corrupt_echo:
                        at = self.corrupt_at
                        data = data[:at] + ("Q" if data[at] != "Q" else "R") + data[at + 1 :]
                    await ws.send_str(json.dumps({"op": "echo", "data": data}))
                    self.delivered += 1
                elif op == "publish":
                    channel = m["channel"]
                    if self.corrupt_channel:
                        channel = ("Q" if channel[0] != "Q" else "R") + channel[1:]
                    out = json.dumps({"op": "message", "channel": channel, "data": m["data"]})
                    own = set(self._subs.get((tenant, m["channel"]), set()))
                    leak: set[web.WebSocketResponse] = set()
                    if self.leak_to is not None and self.leak_to != tenant:
                        leak = self._subs.get((self.leak_to, m["channel"]), set()) - own
                    for peer in own | leak:
                        with contextlib.suppress(ConnectionError):
                            await peer.send_str(out)
                            self.delivered += 1
                            if peer in leak:
                                self.leaked[(tenant, self.leak_to or "")] += 1
                else:
                    await ws.send_str(json.dumps({"op": "error", "code": "bad_op", "message": op}))
        finally:
            self._sockets.discard(ws)
            for key in mine:
                self._subs.get(key, set()).discard(ws)
        return ws


class TcpEcho(LineServer):
    def __init__(self, framing: str = "line", host: str = "127.0.0.1") -> None:
        self.framing = framing
        self.echoed = 0
        """Messages sent back."""
        super().__init__(host)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                if self.framing == "line":
                    line = await reader.readline()
                    if not line:
                        break
                    writer.write(line)
                else:
                    head = await reader.readexactly(4)
                    (n,) = struct.unpack(">I", head)
                    writer.write(head + await reader.readexactly(n))
                self.echoed += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@dataclass
class HttpRequestSeen:
    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpEcho:
    """An HTTP/1.1 keep-alive server in threads of its own (it keeps answering while the
    test's event loop is blocked): a request with a body is answered with that body, one
    without with its path; ``/status/NNN`` answers NNN. It logs every connection and request;
    the requests numbered in ``hang`` (1-based, over the server's life) get no answer until
    the server stops."""

    def __init__(self) -> None:
        self.requests: list[HttpRequestSeen] = []
        self.connections = 0
        self.hang: set[int] = set()
        self.delay_s = 0.0
        """How long each answer takes."""
        self.corrupt_at: int | None = None
        """Change this byte of every body echoed (what really went back: ``corrupted``)."""
        self.corrupted = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> HttpEcho:
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with echo._lock:
                    echo.connections += 1
                    self.conn_no = echo.connections

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with echo._lock:
                    echo.requests.append(
                        HttpRequestSeen(
                            self.conn_no, self.command, self.path, dict(self.headers), body
                        )
                    )
                    number = len(echo.requests)
                if number in echo.hang:
                    echo._release.wait()
                    self.close_connection = True
                    return
                if echo.delay_s:
                    time.sleep(echo.delay_s)
                if self.path == "/early":  # an interim answer first
                    self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
                status = 200
                if self.path.startswith("/status/"):
                    status = int(self.path.removeprefix("/status/"))
                out = body or self.path.encode()
                at = echo.corrupt_at
                if at is not None and body and at < len(body):
                    out = body[:at] + (b"Q" if body[at] != ord("Q") else b"R") + body[at + 1 :]
                    with echo._lock:
                        echo.corrupted += 1
                self.send_response(status)
                if self.path == "/close":
                    self.send_header("connection", "close")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

            def log_message(self, format: str, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                return None  # a client that went away mid-answer is no test failure

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
