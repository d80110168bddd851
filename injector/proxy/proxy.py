"""One proxy: a listener, its open connections and its toxics."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from typing import TYPE_CHECKING, Protocol

from injector.proxy.allowlist import ip_literal, join_host_port, split_host_port
from injector.proxy.errors import ListenError
from injector.proxy.link import Connection
from injector.proxy.model import Direction, Toxic

if TYPE_CHECKING:
    from collections.abc import Coroutine


class ProxyHost(Protocol):
    """What a proxy needs from the server that owns it."""

    def spawn(self, coro: Coroutine[object, object, None]) -> None: ...

    def connection_opened(self, proxy: Proxy, conn: Connection) -> None: ...

    def connection_closed(self, proxy: Proxy, conn: Connection) -> None: ...

    def bind_address(self, listen: str) -> tuple[str, int]: ...

    def dial_targets_now(self, host: str, port: int) -> list[tuple[str, int]]: ...

    async def dial_targets(self, host: str, port: int) -> list[tuple[str, int]]: ...


log = logging.getLogger(__name__)

_BIND_ERRNOS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)
"""Failures Go reports from the bind step (``listen tcp A: bind: ...``)."""


def _strerror(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


class Proxy:
    """A named listener forwarding to ``upstream`` through per-direction toxic chains."""

    def __init__(self, host: ProxyHost, name: str, listen: str, upstream: str) -> None:
        self.host = host
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.connections: dict[str, Connection] = {}
        self.closed_bytes = {Direction.UPSTREAM: [0, 0], Direction.DOWNSTREAM: [0, 0]}
        self._server: asyncio.AbstractServer | None = None
        self._accepting: socket.socket | None = None
        """The listening socket, on asyncio's selector loop (see :meth:`_accept_ready`)."""
        self._listening = False
        """From just before the listener starts until it is stopped."""
        self._upstream_address = ("127.0.0.1", 0)
        self.direct_targets: list[tuple[str, int]] | None = None
        self._set_upstream(upstream)

    def _set_upstream(self, upstream: str) -> None:
        try:
            self._upstream_address = split_host_port(upstream)
        except ValueError:
            # Dialling an unparseable upstream fails, which closes each client: as upstream does.
            self._upstream_address = ("", 0)
        host, port = self._upstream_address
        # An address needs no resolving: its check is done once, here, not on every dial.
        self.direct_targets = None
        if ip_literal(host) is not None:
            self.direct_targets = self.host.dial_targets_now(host, port)

    # -- what connections ask of their proxy (ConnectionOwner) ---------------------------------

    @property
    def upstream_address(self) -> tuple[str, int]:
        return self._upstream_address

    async def dial_targets(self) -> list[tuple[str, int]]:
        """Addresses a new connection may dial now (none: the client is closed)."""
        if self.direct_targets is not None:
            return self.direct_targets
        host, port = self._upstream_address
        if not host:
            return []
        return await self.host.dial_targets(host, port)

    def toxics_for(self, direction: Direction) -> list[Toxic]:
        return [t for t in self.toxics if t.direction is direction]

    def contains_window(self) -> int:
        windows = [
            t.match.within_bytes
            for t in self.toxics
            if t.match is not None and t.match.contains is not None
        ]
        return max(windows, default=0)

    def connection_accepted(self, conn: Connection) -> None:
        if not self._listening:
            conn.close()  # its protocol started after the proxy stopped
            return
        self.connections[conn.id] = conn
        self.host.spawn(conn.dial())

    def connection_opened(self, conn: Connection) -> None:
        self.host.connection_opened(self, conn)

    def connection_closed(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        for link in (conn.up, conn.down):
            totals = self.closed_bytes[link.direction]
            totals[0] += link.received
            totals[1] += link.sent
        self.host.connection_closed(self, conn)

    def byte_totals(self, direction: Direction) -> tuple[int, int]:
        """(received, sent) bytes on links of ``direction``, closed connections included."""
        received, sent = self.closed_bytes[direction]
        for conn in self.connections.values():
            link = conn.up if direction is Direction.UPSTREAM else conn.down
            received += link.received
            sent += link.sent
        return received, sent

    # -- listener ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``listen`` and start accepting; ``listen`` then shows the bound address."""
        if self.enabled:
            return
        loop = asyncio.get_running_loop()
        host, port = self.host.bind_address(self.listen)
        try:
            # An address, never a name (see ListenAllowlist): no resolver is involved.
            infos = socket.getaddrinfo(
                host,
                port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
            )
        except (OSError, UnicodeError, ValueError):
            raise ListenError(f"listen tcp: lookup {host}: no such host") from None
        family, _, _, _, address = infos[0]
        shown = join_host_port(str(address[0]), port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(4096)
            sock.setblocking(False)
            self._listening = True
            if isinstance(loop, asyncio.SelectorEventLoop):
                # asyncio's own server drops, unclosed, a connection it accepted in the loop
                # iteration before the server closed (Python 3.11, Server._attach): accepted
                # here instead, each connection is ours from the accept on.
                loop.add_reader(sock.fileno(), self._accept_ready, sock)
                self._accepting = sock
            else:
                self._server = await loop.create_server(
                    lambda: Connection(self, loop).client_side, sock=sock, backlog=4096
                )
        except OSError as exc:
            self._listening = False
            sock.close()
            op = "bind" if exc.errno in _BIND_ERRNOS else "listen"
            raise ListenError(f"listen tcp {shown}: {op}: {_strerror(exc)}") from None
        bound = sock.getsockname()
        self.listen = join_host_port(str(bound[0]), int(bound[1]))
        self.enabled = True

    def stop(self) -> None:
        """Close the listener and every open connection."""
        self.enabled = False
        self._listening = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        listening, self._accepting = self._accepting, None
        if listening is not None:
            with contextlib.suppress(Exception):  # no loop any more
                asyncio.get_running_loop().remove_reader(listening.fileno())
            listening.close()
        for conn in list(self.connections.values()):
            conn.close()

    def _accept_ready(self, listening: socket.socket) -> None:
        """Accept what is waiting (a bounded batch per loop iteration, as asyncio does) and
        hand each connection to its protocol; one accepted after the stop is closed."""
        loop = asyncio.get_running_loop()
        for _ in range(256):
            try:
                conn, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the listener stays
                log.warning("proxy %s: accept failed: %s", self.name, exc)
                return
            conn.setblocking(False)
            if self._accepting is not listening:  # stopped earlier in this loop iteration
                conn.close()
                continue
            self.host.spawn(self._serve(loop, conn))

    async def _serve(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(
                lambda: Connection(self, loop).client_side, sock=conn
            )
        except BaseException:
            conn.close()
            raise

    def change_upstream(self, upstream: str) -> None:
        self.upstream = upstream
        self._set_upstream(upstream)

    # -- toxics -------------------------------------------------------------------------------

    def find_toxic(self, name: str) -> Toxic | None:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        return None

    def ordered_toxics(self) -> list[Toxic]:
        """Upstream toxics first, then downstream, each in insertion order."""
        return self.toxics_for(Direction.UPSTREAM) + self.toxics_for(Direction.DOWNSTREAM)

    def _sync(self, direction: Direction, removed: tuple[str, ...] = ()) -> None:
        toxics = self.toxics_for(direction)
        window = self.contains_window()
        for conn in list(self.connections.values()):
            if conn.closed or conn.up.sink is None:
                continue  # still dialling: it syncs when the upstream answers
            if window > len(conn.prefix) and conn.sniffing:
                conn.start_sniffing(window)
            link = conn.up if direction is Direction.UPSTREAM else conn.down
            link.sync(toxics, removed)

    def add_toxic(self, toxic: Toxic) -> None:
        self.toxics.append(toxic)
        self._sync(toxic.direction)

    def toxic_changed(self, toxic: Toxic) -> None:
        self._sync(toxic.direction)

    def remove_toxic(self, toxic: Toxic) -> None:
        self.toxics.remove(toxic)
        self._sync(toxic.direction, (toxic.name,))

    def remove_all_toxics(self) -> list[Toxic]:
        removed, self.toxics = self.toxics, []
        names = tuple(t.name for t in removed)
        for direction in Direction:
            self._sync(direction, names)
        return removed

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.as_json() for t in self.ordered_toxics()],
        }

    def close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
