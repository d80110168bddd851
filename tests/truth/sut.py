"""Systems under test that log their own ground truth, for checking the analyzers' figures.

:class:`TruthEcho` is a line echo server over TCP that writes down every line it echoed.
:class:`Relay` is a tier in front of a dependency (a mid tier that swallows while it is
unreachable, a front tier that gives clients up after a patience). :class:`ChannelChat` is a
WebSocket chat that counts its deliveries to sessions not subscribed to the channel. The
analyzers' figures are compared with these logs, not with what the test planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.loopback import LineServer


@dataclass
class EchoLog:
    echoed: int = 0
    """Lines answered, all connections together."""
    connections: int = 0
    outages: list[tuple[int, int]] = field(default_factory=list)
    """(stopped, resumed) wall-clock ns of every interval the server did not answer."""


class TruthEcho(LineServer):
    """Echoes each line back to its sender; :meth:`stop_answering` makes it swallow lines (the
    clients time out) until :meth:`resume`, both logged with the time they took effect."""

    def __init__(self) -> None:
        self.log = EchoLog()
        super().__init__()
        self._mute_since: int | None = None

    def stop_answering(self) -> None:
        if self._mute_since is None:
            self._mute_since = time.time_ns()

    def resume(self) -> None:
        if self._mute_since is not None:
            self.log.outages.append((self._mute_since, time.time_ns()))
            self._mute_since = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.log.connections += 1
        try:
            while line := await reader.readline():
                if self._mute_since is not None:
                    continue
                writer.write(line)
                self.log.echoed += 1
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class Relay(LineServer):
    """A line service in front of a dependency (``upstream``), logging what it did.

    ``sequential`` False (a *mid* tier): lines are forwarded as they come; while the dependency
    is unreachable they are swallowed (clients time out) and it redials every 20 ms.
    ``sequential`` True (a *front* tier): one line at a time per client, waiting up to
    ``patience_s`` for the dependency's answer; past that it gives the client up and closes its
    connection (logged in ``gave_up``), as a tier with a timeout longer than a fault does.
    """

    def __init__(self, upstream: str, *, sequential: bool, patience_s: float = 1.0) -> None:
        self.upstream = upstream
        self.sequential = sequential
        self.patience_s = patience_s
        self.gave_up: list[int] = []
        """Wall-clock ns at which a client was given up."""
        self.swallowed = 0
        super().__init__()

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        host, port = self.upstream.rsplit(":", 1)
        try:
            return await asyncio.open_connection(host, int(port))
        except OSError:
            return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.sequential:
                await self._front(reader, writer)
            else:
                await self._mid(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _front(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = await self._dial()
        if up is None:
            return
        up_r, up_w = up
        self._writers.add(up_w)
        try:
            while line := await reader.readline():
                up_w.write(line)
                await up_w.drain()
                try:
                    async with asyncio.timeout(self.patience_s):
                        answer = await up_r.readline()
                except TimeoutError:
                    self.gave_up.append(time.time_ns())
                    return
                if not answer:
                    return
                writer.write(answer)
                await writer.drain()
        finally:
            self._writers.discard(up_w)
            up_w.close()

    async def _mid(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state: dict[str, asyncio.StreamWriter | None] = {"up": None}
        first = await self._dial()  # a client is served once its dependency is reachable
        if first is None:
            return

        async def pump_back() -> None:
            up = first
            while True:
                while up is None:
                    await asyncio.sleep(0.02)
                    up = await self._dial()
                up_r, up_w = up
                up = None
                self._writers.add(up_w)
                state["up"] = up_w
                try:
                    while answer := await up_r.readline():
                        writer.write(answer)
                        await writer.drain()
                except ConnectionError:
                    pass
                finally:
                    state["up"] = None
                    self._writers.discard(up_w)
                    up_w.close()

        state["up"] = first[1]
        back = asyncio.create_task(pump_back())
        try:
            while line := await reader.readline():
                up_w = state["up"]
                if up_w is None or up_w.is_closing():
                    self.swallowed += 1
                    continue
                up_w.write(line)
                with contextlib.suppress(ConnectionError):
                    await up_w.drain()
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back


class ChannelChat:
    """A WebSocket chat (the sample's protocol: subscribe, echo, publish → message) that logs
    every delivery. ``deliver_to_all`` names channels whose messages it (wrongly) sends to every
    connected session, subscribed or not; ``misdelivered`` counts deliveries to sessions not
    subscribed to the message's channel."""

    def __init__(self, deliver_to_all: frozenset[str] = frozenset()) -> None:
        self.deliver_to_all = deliver_to_all
        self.delivered = 0
        self.misdelivered = 0
        self.port = 0
        self._subs: dict[web.WebSocketResponse, set[str]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> ChannelChat:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._subs):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._subs[ws] = set()
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                if m.get("op") == "subscribe":
                    self._subs[ws].update(m["channels"])
                    await ws.send_str(json.dumps({"op": "subscribed", "channels": m["channels"]}))
                elif m.get("op") == "echo":
                    await ws.send_str(json.dumps({"op": "echo", "data": m["data"]}))
                elif m.get("op") == "publish":
                    await self._publish(m["channel"], m["data"])
        finally:
            self._subs.pop(ws, None)
        return ws

    async def _publish(self, channel: str, data: str) -> None:
        out = json.dumps({"op": "message", "channel": channel, "data": data})
        for peer, channels in list(self._subs.items()):
            subscribed = channel in channels
            if not subscribed and channel not in self.deliver_to_all:
                continue
            if peer.closed:
                continue
            with contextlib.suppress(ConnectionError):
                await peer.send_str(out)
                self.delivered += 1
                self.misdelivered += not subscribed
