"""The gateway: HTTP auth and load endpoints plus the WebSocket chat protocol on one port.

Every WebSocket session gets a subscription slot (``slots.py``); its subscriptions are routed
by the slot's tenant. Echo and publish go to the message service over the link
(``link.py``); messages come back over the link and fan out to the sessions routed to
``(tenant, channel)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import ops, wire
from .auth import Identity, TokenStore
from .config import BugsUpdate, ChatConfig, Defects
from .errors import (
    BadFrame,
    ChatError,
    LinkDown,
    RedisDown,
    UpstreamUnavailable,
)
from .http_api import HttpApi, HttpError, bearer_token
from .link import LinkState, MessageLink
from .slots import Slot, SlotTable
from .telemetry import context_from_headers, current_traceparent, tracer

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from opentelemetry import trace

log = logging.getLogger(__name__)

TOKEN_PURGE_INTERVAL_S = 60.0

Key = tuple[str, str]
"""(tenant, channel)"""


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Session:
    """One WebSocket connection. Everything it sends goes through ``outbox`` in order."""

    __slots__ = ("closing", "identity", "outbox", "outbox_limit", "sid", "slot")

    def __init__(self, sid: int, identity: Identity, slot: Slot, outbox_limit: int) -> None:
        self.sid = sid
        self.identity = identity
        self.slot = slot
        self.outbox: asyncio.Queue[bytes | _Close] = asyncio.Queue()
        self.outbox_limit = outbox_limit
        self.closing = False

    def push(self, payload: bytes) -> None:
        if self.closing:
            return
        if self.outbox.qsize() >= self.outbox_limit:
            # Drop what it has not read, so the close is the next thing it gets.
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.close_soon(1013, "slow consumer: outbox full")
            return
        self.outbox.put_nowait(payload)

    def fail(self, code: str, message: str, close_code: int) -> None:
        self.push(ops.error(code, message))
        self.close_soon(close_code, message)

    def close_soon(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.outbox.put_nowait(_Close(code, reason))


class Gateway:
    """Async context manager; binds ``host:port`` and dials the message service."""

    def __init__(
        self,
        message_addr: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: ChatConfig | None = None,
        defects: Defects | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config = config or ChatConfig()
        self._defects = defects or Defects(slow_recovery_s=config.slow_recovery_s)
        self._host, self._port = host, port
        self.tokens = TokenStore(
            token_ttl_s=config.token_ttl_s,
            refresh_ttl_s=config.refresh_ttl_s,
            password=config.password,
            clock=clock,
        )
        self._slots = SlotTable(self._defects, warm_s=config.slot_warm_s, clock=clock)
        self._link = MessageLink(message_addr, self, config)
        self._sessions: dict[int, Session] = {}
        self._routes: dict[Key, set[Session]] = {}
        self._upstream: dict[Key, asyncio.Future[None]] = {}
        self._acks: dict[Key, deque[asyncio.Future[None]]] = {}
        self._bug_replies: dict[int, asyncio.Future[wire.Frame]] = {}
        self._ids = itertools.count(1)
        self._redis_up = False
        self._health_changed = asyncio.Event()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._stack: AsyncExitStack | None = None
        self.url = ""
        self.ws_url = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        # Bind first: a failed start then raises the plain error (not a task-group wrapper)
        # and still releases whatever it had bound.
        async with AsyncExitStack() as stack:
            sock = socket.create_server((self._host, self._port), backlog=4096)
            stack.callback(sock.close)  # after the runner's cleanup, if start fails midway
            runner = web.AppRunner(
                self._make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.SockSite(runner, sock, backlog=4096)
            await site.start()
            host, port = sock.getsockname()[:2]
            self.url = f"http://{host}:{port}"
            self.ws_url = f"ws://{host}:{port}/ws"
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            for job in (self._link.run(), self._purge_tokens()):
                stack.callback(tg.create_task(job).cancel)
            stack.push_async_callback(self._close_sessions)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _close_sessions(self) -> None:
        for session in list(self._sessions.values()):
            session.close_soon(1001, "server shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._no_sessions.wait()

    async def _purge_tokens(self) -> None:
        while True:
            await asyncio.sleep(TOKEN_PURGE_INTERVAL_S)
            self.tokens.purge_expired()

    # -- state ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._link.state is LinkState.UP and self._redis_up

    def health(self) -> dict[str, str]:
        link_up = self._link.state is LinkState.UP
        return {
            "status": "ok" if self.healthy else "unavailable",
            "message_service": "up" if link_up else "down",
            "redis": ("up" if self._redis_up else "down") if link_up else "unknown",
        }

    async def wait_healthy(self) -> None:
        while not self.healthy:
            await self._health_changed.wait()

    def _notify_health(self) -> None:
        self._health_changed.set()
        self._health_changed = asyncio.Event()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- link listener --------------------------------------------------------------------

    def link_up(self, hello: wire.Frame) -> None:
        self._redis_up = hello.get("redis") == "up"
        bugs = hello.get("bugs")
        if isinstance(bugs, dict):
            with contextlib.suppress(ValueError):
                BugsUpdate(
                    slow_recovery=bool(bugs.get("slow_recovery")),
                    slow_recovery_s=float(bugs.get("slow_recovery_s", 0.0)),
                ).apply(self._defects)
        log.info("link to the message service up (redis %s)", hello.get("redis"))
        self._notify_health()

    def link_down(self) -> None:
        self._redis_up = False
        self._notify_health()
        self._fail_upstream(LinkDown("link to the message service lost"))
        for session in list(self._sessions.values()):
            session.fail("upstream_unavailable", "message service unreachable", 1011)

    def link_frame(self, frame: wire.Frame) -> None:
        try:
            self._on_frame(frame)
        except BadFrame as exc:
            log.warning("bad frame from the message service: %s", exc.message)

    def _on_frame(self, frame: wire.Frame) -> None:
        kind = frame["t"]
        if kind == "msg":
            key = (wire.text(frame, "tenant"), wire.text(frame, "channel"))
            sessions = self._routes.get(key)
            if sessions:
                payload = ops.reply("message", channel=key[1], data=wire.text(frame, "data"))
                for session in sessions:
                    session.push(payload)
        elif kind == "echo":
            target = self._sessions.get(wire.integer(frame, "sid"))
            if target is not None:
                target.push(ops.reply("echo", data=wire.text(frame, "data")))
        elif kind == "err":
            target = self._sessions.get(wire.integer(frame, "sid"))
            if target is not None:
                target.fail(wire.text(frame, "code"), wire.text(frame, "message"), 1011)
        elif kind == "status":
            self._set_redis_up(frame.get("redis") == "up")
        elif kind in ("suback", "suberr"):
            key = (wire.text(frame, "tenant"), wire.text(frame, "channel"))
            waiters = self._acks.get(key)
            if not waiters:
                return
            waiter = waiters.popleft()
            if not waiters:
                del self._acks[key]
            if kind == "suback":
                waiter.set_result(None)
            else:
                if self._upstream.get(key) is waiter:
                    del self._upstream[key]
                waiter.set_exception(RedisDown(str(frame.get("message", "subscribe failed"))))
        elif kind == "bugs":
            reply = self._bug_replies.pop(wire.integer(frame, "id"), None)
            if reply is not None and not reply.done():
                reply.set_result(frame)
        elif kind == "bad":
            log.warning("message service rejected a frame: %s", frame.get("message"))

    def _set_redis_up(self, up: bool) -> None:
        was_up, self._redis_up = self._redis_up, up
        if was_up != up:
            self._notify_health()
        if was_up and not up:
            log.warning("message service reports redis down")
            self._fail_upstream(RedisDown("redis is down"))
            for session in list(self._sessions.values()):
                if session.slot.channels:
                    session.fail("upstream_unavailable", "redis is down", 1011)

    def _fail_upstream(self, error: ChatError) -> None:
        for waiters in self._acks.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        self._acks.clear()
        self._upstream.clear()

    # -- routing --------------------------------------------------------------------------

    def _route(self, session: Session, channel: str) -> asyncio.Future[None]:
        key = (session.slot.tenant, channel)
        session.slot.channels.add(channel)
        self._routes.setdefault(key, set()).add(session)
        upstream = self._upstream.get(key)
        if upstream is None:
            upstream = asyncio.get_running_loop().create_future()
            upstream.add_done_callback(_mark_retrieved)
            self._link.send({"t": "sub", "tenant": key[0], "channel": key[1]})
            self._upstream[key] = upstream
            self._acks.setdefault(key, deque()).append(upstream)
        return upstream

    def _unroute(self, session: Session) -> None:
        tenant = session.slot.tenant
        for channel in session.slot.channels:
            key = (tenant, channel)
            sessions = self._routes.get(key)
            if sessions is None:
                continue
            sessions.discard(session)
            if not sessions:
                del self._routes[key]
                self._upstream.pop(key, None)
                with contextlib.suppress(LinkDown):
                    self._link.send({"t": "unsub", "tenant": tenant, "channel": channel})

    # -- WebSocket ------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        token = bearer_token(request) or request.query.get("token", "")
        if not token:
            raise HttpError(401, "missing access token (Authorization: Bearer or ?token=)")
        identity = self.tokens.verify(token)
        if not self.healthy:
            health = self.health()
            raise HttpError(
                503,
                f"upstream unavailable (message service {health['message_service']}, "
                f"redis {health['redis']})",
            )
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=self._config.max_frame_bytes, timeout=2.0
        )
        with tracer.start_as_current_span(
            "ws.session", context=context_from_headers(request.headers), kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("chat.tenant", identity.tenant)
            span.set_attribute("enduser.id", identity.user)
            await ws.prepare(request)
            session = Session(
                next(self._ids),
                identity,
                self._slots.acquire(identity.tenant),
                self._config.outbox_limit,
            )
            span.set_attribute("chat.slot", session.slot.index)
            self._sessions[session.sid] = session
            self._no_sessions.clear()
            try:
                async with asyncio.TaskGroup() as tg:
                    writer = tg.create_task(self._write_loop(ws, session))
                    await self._read_loop(ws, session)
                    if not session.closing:
                        writer.cancel()
            finally:
                del self._sessions[session.sid]
                if not self._sessions:
                    self._no_sessions.set()
                self._unroute(session)
                self._slots.release(session.slot)
                if ws.close_code is not None:
                    span.set_attribute("websocket.close_code", ws.close_code)
        return ws

    async def _write_loop(self, ws: web.WebSocketResponse, session: Session) -> None:
        try:
            while True:
                item = await session.outbox.get()
                if isinstance(item, _Close):
                    # A close reason is at most 123 bytes of UTF-8.
                    reason = item.reason.encode()[:120].decode(errors="ignore").encode()
                    await ws.close(code=item.code, message=reason)
                    return
                await ws.send_frame(item, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            return  # the peer is gone; the read loop sees it too

    async def _read_loop(self, ws: web.WebSocketResponse, session: Session) -> None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await self._handle(session, msg.data)
            elif msg.type is WSMsgType.BINARY:
                session.push(ops.error("bad_frame", "binary frames are not supported; send text"))
            else:
                return
            if session.closing:
                return

    async def _handle(self, session: Session, text: str) -> None:
        try:
            op = ops.parse(text)
        except BadFrame as exc:
            session.push(ops.error(exc.code, exc.message))
            return
        try:
            if isinstance(op, ops.Echo):
                with tracer.start_as_current_span("ws.echo"):
                    tp = current_traceparent()
                    self._link.send({"t": "echo", "sid": session.sid, "data": op.data, "tp": tp})
            elif isinstance(op, ops.Publish):
                with tracer.start_as_current_span("ws.publish") as span:
                    span.set_attribute("chat.channel", op.channel)
                    if not self._redis_up:
                        raise RedisDown("redis is down")
                    self._link.send(
                        {
                            "t": "pub",
                            "sid": session.sid,
                            "tenant": session.slot.tenant,
                            "channel": op.channel,
                            "data": op.data,
                            "tp": current_traceparent(),
                        }
                    )
            else:
                with tracer.start_as_current_span("ws.subscribe") as span:
                    await self._subscribe(session, op, span)
        except UpstreamUnavailable as exc:
            session.fail("upstream_unavailable", str(exc), 1011)

    async def _subscribe(self, session: Session, op: ops.Subscribe, span: trace.Span) -> None:
        span.set_attribute("chat.channels", list(op.channels))
        if not self._redis_up:
            raise RedisDown("redis is down")
        waits = [self._route(session, ch) for ch in op.channels if ch not in session.slot.channels]
        if waits:
            done, pending = await asyncio.wait(waits, timeout=self._config.redis_timeout_s * 2)
            if pending:
                span.set_status(Status(StatusCode.ERROR, "subscribe timed out"))
                raise RedisDown("subscribe timed out upstream")
            for fut in done:
                error = fut.exception()
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, str(error)))
                    raise RedisDown(str(error))
        session.push(ops.reply("subscribed", channels=list(op.channels)))

    # -- HTTP -----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        api = HttpApi(self, self.tokens, self._defects)
        app = web.Application(
            middlewares=[api.errors], client_max_size=self._config.max_frame_bytes
        )
        api.add_routes(app)
        app.router.add_get("/ws", self._ws)
        return app

    async def update_bugs(self, update: BugsUpdate) -> None:
        """Apply ``update`` here and, for slow_recovery, in the message service first."""
        if update.slow_recovery is not None or update.slow_recovery_s is not None:
            # slow_recovery lives in the message service, which may be another process.
            request_id = next(self._ids)
            reply = asyncio.get_running_loop().create_future()
            self._bug_replies[request_id] = reply
            try:
                self._link.send(
                    {"t": "bugs", "id": request_id, "set": update.model_dump(exclude_none=True)}
                )
                async with asyncio.timeout(2.0):
                    await reply
            except TimeoutError as exc:
                raise LinkDown("message service did not answer") from exc
            finally:
                self._bug_replies.pop(request_id, None)
        update.apply(self._defects)
        log.warning("defects now %s", self._defects.snapshot())


def _mark_retrieved(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
