"""The message service: serves gateways over the framed link (echo, publish, subscribe),
fans Redis pub/sub messages back to them, and answers newline-delimited raw TCP echo on a
port of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import wire
from .config import BugsUpdate, ChatConfig, Defects
from .errors import BadFrame, ChatError, LinkDown
from .redis_hub import RedisHub, RedisState
from .telemetry import context_from_traceparent, tracer

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

ECHO_LINE_LIMIT = 64 * 1024


def redis_key(tenant: str, channel: str) -> str:
    return f"chat:{tenant}:{channel}"


class _Link:
    """One connected gateway."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.out = wire.FrameWriter(writer)
        self.keys: set[str] = set()

    def send(self, frame: wire.Frame) -> None:
        with contextlib.suppress(LinkDown):
            self.out.send(frame)


class MessageService:
    """Async context manager; binds ``host`` on ``port`` (link) and ``echo_port`` (raw TCP)."""

    def __init__(
        self,
        redis_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        echo_port: int = 0,
        config: ChatConfig | None = None,
        defects: Defects | None = None,
    ) -> None:
        self._config = config or ChatConfig()
        self._defects = defects or Defects(slow_recovery_s=self._config.slow_recovery_s)
        self._host, self._port, self._echo_port = host, port, echo_port
        self._hub = RedisHub(
            redis_url,
            config=self._config,
            defects=self._defects,
            on_message=self._on_redis_message,
            on_state=self._on_redis_state,
        )
        self._links: set[_Link] = set()
        self._echo_writers: set[asyncio.StreamWriter] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._interest: dict[str, set[_Link]] = {}
        self._stack: AsyncExitStack | None = None
        self._servers: list[asyncio.Server] = []
        self.addr = ""
        self.echo_addr = ""

    @property
    def redis_state(self) -> RedisState:
        return self._hub.state

    @property
    def defects(self) -> Defects:
        return self._defects

    async def __aenter__(self) -> MessageService:
        # Bind first: a failed start then raises the plain error (not a task-group wrapper)
        # and still releases whatever it had bound.
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._close_servers)
            link_server = await asyncio.start_server(self._serve_link, self._host, self._port)
            self._servers.append(link_server)
            echo_server = await asyncio.start_server(
                self._serve_echo, self._host, self._echo_port, limit=ECHO_LINE_LIMIT
            )
            self._servers.append(echo_server)
            self.addr = _addr(link_server)
            self.echo_addr = _addr(echo_server)
            stack.callback(setattr, self, "_tg", None)  # runs once the task group is done
            tg = self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            stack.push_async_callback(self._hub.stop, tg.create_task(self._hub.run()))
            stack.callback(tg.create_task(self._heartbeat()).cancel)
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

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._links):
            link.out.close()
        for writer in list(self._echo_writers):
            writer.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await server.wait_closed()
        self._servers.clear()

    # -- link -----------------------------------------------------------------------------

    async def _serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        link.send({"t": "hello", "redis": self._hub.state.value, "bugs": self._defects.snapshot()})
        try:
            async with asyncio.TaskGroup() as tg:
                while (body := await wire.read_body(reader, self._link_frame_limit)) is not None:
                    try:
                        self._dispatch(link, wire.decode(body), tg)
                    except BadFrame as exc:
                        link.send({"t": "bad", "code": exc.code, "message": exc.message})
        except* BadFrame as group:
            # Framing is lost (length or JSON broken): say why, then hang up.
            lost = group.exceptions[0]
            if isinstance(lost, BadFrame):
                link.send({"t": "bad", "code": lost.code, "message": lost.message})
        except* OSError:
            pass
        finally:
            self._links.discard(link)
            for key in link.keys:
                self._drop_interest(key, link)
            link.keys.clear()
            link.out.close()

    @property
    def _link_frame_limit(self) -> int:
        return self._config.max_frame_bytes + 4096

    def _dispatch(self, link: _Link, frame: wire.Frame, tg: asyncio.TaskGroup) -> None:
        kind = frame["t"]
        if kind == "echo":
            sid, data = wire.integer(frame, "sid"), wire.text(frame, "data")
            with tracer.start_span(
                "message.echo",
                context=context_from_traceparent(wire.optional_text(frame, "tp")),
                kind=SpanKind.SERVER,
            ):
                link.send({"t": "echo", "sid": sid, "data": data})
        elif kind == "pub":
            self._publish(link, frame)
        elif kind == "sub":
            tenant, channel = wire.text(frame, "tenant"), wire.text(frame, "channel")
            tg.create_task(self._subscribe(link, tenant, channel))
        elif kind == "unsub":
            key = redis_key(wire.text(frame, "tenant"), wire.text(frame, "channel"))
            if key in link.keys:
                link.keys.discard(key)
                self._drop_interest(key, link)
        elif kind == "bugs":
            request_id = wire.integer(frame, "id")
            changes = frame.get("set")
            try:
                BugsUpdate.model_validate(changes if isinstance(changes, dict) else {}).apply(
                    self._defects
                )
            except ValueError as exc:
                raise BadFrame("bad_field", f'link frame "bugs": {exc}') from exc
            link.send({"t": "bugs", "id": request_id, "state": self._defects.snapshot()})
        else:
            raise BadFrame("unknown_type", f'unknown link frame type "{str(kind)[:64]}"')

    def _publish(self, link: _Link, frame: wire.Frame) -> None:
        sid = wire.integer(frame, "sid")
        tenant, channel = wire.text(frame, "tenant"), wire.text(frame, "channel")
        data = wire.text(frame, "data")
        span = tracer.start_span(
            "message.publish",
            context=context_from_traceparent(wire.optional_text(frame, "tp")),
            kind=SpanKind.SERVER,
        )
        span.set_attribute("chat.tenant", tenant)

        def done(error: Exception | None) -> None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, str(error)))
                link.send(
                    {"t": "err", "sid": sid, "code": "upstream_unavailable", "message": str(error)}
                )
            span.end()

        with trace.use_span(span, end_on_exit=False):
            self._hub.publish(redis_key(tenant, channel), data, done)

    async def _subscribe(self, link: _Link, tenant: str, channel: str) -> None:
        key = redis_key(tenant, channel)
        link.keys.add(key)
        links = self._interest.setdefault(key, set())
        links.add(link)
        try:
            await self._hub.subscribe(key)
        except ChatError as exc:
            link.send({"t": "suberr", "tenant": tenant, "channel": channel, "message": str(exc)})
            return
        link.send({"t": "suback", "tenant": tenant, "channel": channel})

    def _drop_interest(self, key: str, link: _Link) -> None:
        links = self._interest.get(key)
        if links is None:
            return
        links.discard(link)
        if not links:
            del self._interest[key]
            if self._tg is not None:
                # The group refuses new tasks once it is shutting down; then there is
                # nothing left to unsubscribe from.
                with contextlib.suppress(RuntimeError):
                    self._tg.create_task(self._unsubscribe(key))

    async def _unsubscribe(self, key: str) -> None:
        # Interest may have come back before this task ran; then the subscription stays.
        if key not in self._interest:
            await self._hub.unsubscribe(key)

    # -- redis callbacks ------------------------------------------------------------------

    def _on_redis_message(self, key: str, data: bytes) -> None:
        links = self._interest.get(key)
        if not links:
            return
        _, tenant, channel = key.split(":", 2)
        frame: wire.Frame = {
            "t": "msg",
            "tenant": tenant,
            "channel": channel,
            "data": data.decode(),
        }
        for link in links:
            link.send(frame)

    def _on_redis_state(self, state: RedisState) -> None:
        if state is RedisState.CONNECTING:
            return
        for link in self._links:
            link.send({"t": "status", "redis": state.value})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._config.link_heartbeat_s)
            for link in self._links:
                link.send({"t": "status", "redis": self._hub.state.value})

    # -- raw TCP echo ---------------------------------------------------------------------

    async def _serve_echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._echo_writers.add(writer)
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ValueError, asyncio.LimitOverrunError):
            writer.write(b"error: line longer than %d bytes\n" % ECHO_LINE_LIMIT)
        except (OSError, RuntimeError):  # uvloop: RuntimeError on a transport already closed
            pass
        finally:
            self._echo_writers.discard(writer)
            writer.close()


def _addr(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"
