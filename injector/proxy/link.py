"""The data path: one proxied connection, its two sockets and its two links.

Each accepted client socket gets a :class:`Connection` that dials the upstream at once. Data
flows through asyncio Protocols (no streams, no per-chunk copies): a chunk read from one socket
goes through the link's chain of toxic stages and is written to the other socket. Flow control
is pause/resume_reading both ways: a full write buffer on one socket, or too much data held by
stages, pauses reading on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import random
import socket
import struct
import time
from typing import TYPE_CHECKING, Protocol, cast

from injector.proxy.model import Direction, Toxic

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from injector.proxy.toxics import Stage

HIGH_WATER = 1 << 20
"""Bytes held by a link's stages above which reading from its source pauses."""
LOW_WATER = HIGH_WATER // 4
SNIFF_BYTES = 4096
"""Client bytes kept per connection for ``match.contains`` (more if a match asks for more)."""

_ids = itertools.count(1)


class Link:
    """One direction of a connection: a source socket, a chain of stages, a sink socket."""

    def __init__(self, conn: Connection, direction: Direction) -> None:
        self.conn = conn
        self.direction = direction
        self.loop = conn.loop
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.received = 0
        self._sent = 0
        self._direct_from: int | None = None
        """While no stage is active, chunks go straight to the socket's ``write`` and bytes
        sent are counted from ``received`` (one call less per chunk)."""
        self.held = 0
        self.stages: dict[str, Stage] = {}
        self.order: list[str] = []
        self.head: Callable[[bytes], None] = self.write
        self.head_eof: Callable[[], None] = self.write_eof
        self.eof_sent = False
        self._sink_full = False
        self._held_full = False
        self._paused = False

    # -- hot path ------------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        if self._direct_from is None:
            return self._sent
        return self._sent + self.received - self._direct_from

    def write(self, data: bytes) -> None:
        self._sent += len(data)
        sink = self.sink
        if sink is not None:
            sink.write(data)

    def write_eof(self) -> None:
        self.eof_sent = True
        sink = self.sink
        if sink is not None and not sink.is_closing():
            if sink.can_write_eof():
                try:
                    sink.write_eof()
                except OSError:
                    # The peer is gone and the socket with it (ENOTCONN: a reset not read
                    # yet); asyncio's transport raises where uvloop's reports it as lost.
                    sink.abort()
            else:
                sink.close()
        self.conn.link_finished()

    # -- flow control --------------------------------------------------------------------------

    def sink_full(self, full: bool) -> None:
        self._sink_full = full
        self._update_reading()

    def buffered_changed(self, delta: int) -> None:
        self.held += delta
        if self._held_full:
            if self.held <= LOW_WATER:
                self._held_full = False
                self._update_reading()
        elif self.held > HIGH_WATER:
            self._held_full = True
            self._update_reading()

    def _update_reading(self) -> None:
        pause = self._sink_full or self._held_full
        if pause == self._paused:
            return
        self._paused = pause
        source = self.source
        if source is None or source.is_closing():
            return
        if pause:
            source.pause_reading()
        else:
            source.resume_reading()

    # -- LinkPort for stages ------------------------------------------------------------------

    def close_connection(self) -> None:
        self.conn.close()

    def reset_connection(self) -> None:
        self.conn.reset()

    # -- the chain ------------------------------------------------------------------------------

    def active_names(self) -> list[str]:
        return [name for name in self.order if self.stages[name].active]

    def sync(self, toxics: Iterable[Toxic], removed: Iterable[str] = ()) -> None:
        """Bring the chain in line with the proxy's toxics for this direction.

        Toxicity is drawn again for every toxic (as upstream does when a chain changes).
        Stages leaving the chain hand their held data onward first, in chain order.
        """
        removed_set = set(removed)
        wanted = {
            t.name: (t, self.conn.applies(t) and self.conn.rng.random() < t.toxicity)
            for t in toxics
        }
        # Hand held data onward through the old wiring, front to back, before rewiring.
        for name in self.order:
            old = self.stages[name]
            if not old.active:
                continue
            if name in removed_set and name not in wanted:
                old.active = False
                old.removed()
            elif name not in wanted or not wanted[name][1]:
                old.active = False
                old.flush()
        for name in [n for n in self.order if n not in wanted]:
            self.stages.pop(name).stop()
        self.order = list(wanted)
        started: list[Stage] = []
        for toxic, active in wanted.values():
            existing = self.stages.get(toxic.name)
            if existing is None:
                stage = toxic.kind.stage(toxic.config, self, self.conn.rng)
                self.stages[toxic.name] = stage
            else:
                stage = existing
                if stage.config is not toxic.config:
                    stage.reconfigure(toxic.config)
            if active and not stage.active:
                stage.active = True
                started.append(stage)
                self.conn.toxics_hit.add(toxic.name)
        self._rewire()
        for stage in started:
            stage.start()

    def _rewire(self) -> None:
        out: Callable[[bytes], None] = self.write
        out_eof: Callable[[], None] = self.write_eof
        for name in reversed(self.order):
            stage = self.stages[name]
            if not stage.active:
                continue
            stage.out = out
            stage.out_eof = out_eof
            out = stage.push
            out_eof = stage.eof
        if self._direct_from is not None:
            self._sent += self.received - self._direct_from
            self._direct_from = None
        if out == self.write and self.sink is not None:
            out = self.sink.write
            self._direct_from = self.received
        self.head = out
        self.head_eof = out_eof

    def stop(self) -> None:
        for stage in self.stages.values():
            stage.stop()


class _Side(asyncio.Protocol):
    """One socket of a connection: feeds ``inbound`` and is the sink of ``outbound``."""

    __slots__ = ("conn", "inbound", "outbound", "transport")

    def __init__(self, conn: Connection, inbound: Link, outbound: Link) -> None:
        self.conn = conn
        self.inbound = inbound
        self.outbound = outbound
        self.transport: asyncio.Transport | None = None

    def data_received(self, data: bytes) -> None:
        link = self.inbound
        link.received += len(data)
        link.head(data)

    def eof_received(self) -> bool:
        self.inbound.head_eof()
        return True

    def pause_writing(self) -> None:
        self.outbound.sink_full(True)

    def resume_writing(self) -> None:
        self.outbound.sink_full(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(self)


class _ClientSide(_Side):
    def eof_received(self) -> bool:
        if self.conn.early is not None:
            self.conn.early_eof = True
            return True
        return super().eof_received()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.conn.client_made(cast("asyncio.Transport", transport))

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn.early is not None:
            conn.hold_early(data)
            return
        if conn.sniffing:
            conn.sniff(data)
        link = self.inbound
        link.received += len(data)
        link.head(data)


class ConnectionOwner(Protocol):
    """What a connection needs from its proxy (kept narrow so the data path stays testable)."""

    @property
    def direct_targets(self) -> list[tuple[str, int]] | None:
        """Where to dial when that needs no resolving (None: ask :meth:`dial_targets`)."""

    async def dial_targets(self) -> list[tuple[str, int]]: ...

    def toxics_for(self, direction: Direction) -> list[Toxic]: ...

    def contains_window(self) -> int: ...

    def connection_accepted(self, conn: Connection) -> None: ...

    def connection_opened(self, conn: Connection) -> None: ...

    def connection_closed(self, conn: Connection) -> None: ...


class Connection:
    """A client socket, its upstream socket, and the two links between them."""

    def __init__(self, owner: ConnectionOwner, loop: asyncio.AbstractEventLoop) -> None:
        self.id = f"c{next(_ids)}"
        self.owner = owner
        self.loop = loop
        self.client: tuple[str, int] = ("0.0.0.0", 0)
        self.client_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            "0.0.0.0"
        )
        self.opened_ns = time.time_ns()
        self.rng = random.Random()
        self.up = Link(self, Direction.UPSTREAM)
        self.down = Link(self, Direction.DOWNSTREAM)
        self.client_side = _ClientSide(self, self.up, self.down)
        self.upstream_side = _Side(self, self.down, self.up)
        self.toxics_hit: set[str] = set()
        self.closed = False
        self.early: list[bytes] | None = []
        """Client data that arrived before the upstream answered (then None)."""
        self.early_eof = False
        self.sniffing = False
        self._prefix = b""
        self._window = 0

    @property
    def client_text(self) -> str:
        host, port = self.client
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def client_made(self, transport: asyncio.Transport) -> None:
        self.client_side.transport = transport
        self.up.source = transport
        self.down.sink = transport
        # Not enough on uvloop, which starts reading after connection_made: see hold_early.
        transport.pause_reading()
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
            with contextlib.suppress(ValueError):
                self.client_ip = ipaddress.ip_address(self.client[0].split("%")[0])
        self.owner.connection_accepted(self)

    async def dial(self) -> None:
        """Connect to the upstream, only ever to an allowed address; on failure close the
        client."""
        try:
            targets = self.owner.direct_targets
            if targets is None:
                targets = await self.owner.dial_targets()
            transport = None
            for host, port in targets:
                try:
                    transport, _ = await self.loop.create_connection(
                        lambda: self.upstream_side, host, port
                    )
                    break
                except (OSError, UnicodeError, ValueError):
                    continue
        except asyncio.CancelledError:
            self.close()
            raise
        if transport is None:
            self.close()
            return
        if self.closed:
            transport.close()
            return
        self.upstream_side.transport = transport
        self.down.source = transport
        self.up.sink = transport
        # Keep the first bytes of every connection, so a toxic added later with
        # ``match.contains`` can still see them.
        self.start_sniffing(max(SNIFF_BYTES, self.owner.contains_window()))
        self.resync()
        self.owner.connection_opened(self)
        early, self.early = self.early, None
        for data in early or ():
            self.client_side.data_received(data)
        if self.early_eof:
            self.up.head_eof()
        client = self.client_side.transport
        if client is not None and not client.is_closing() and not self.up._paused:
            client.resume_reading()

    def hold_early(self, data: bytes) -> None:
        """Keep client data until the upstream answers, and stop reading more."""
        assert self.early is not None
        self.early.append(data)
        transport = self.client_side.transport
        if transport is not None:
            transport.pause_reading()

    def resync(self, removed: Iterable[str] = ()) -> None:
        removed = list(removed)
        self.up.sync(self.owner.toxics_for(Direction.UPSTREAM), removed)
        self.down.sync(self.owner.toxics_for(Direction.DOWNSTREAM), removed)

    def link_finished(self) -> None:
        if self.up.eof_sent and self.down.eof_sent:
            self.close()

    def close(self) -> None:
        """Close both sockets, letting written data drain first."""
        if self.closed:
            return
        self.closed = True
        self.up.stop()
        self.down.stop()
        for side in (self.client_side, self.upstream_side):
            if side.transport is not None:
                side.transport.close()
        self.owner.connection_closed(self)

    def reset(self) -> None:
        """Close both sockets with RST."""
        for side in (self.client_side, self.upstream_side):
            transport = side.transport
            if transport is None:
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        self.close()

    def side_lost(self, side: _Side) -> None:
        side.transport = None
        self.close()

    # -- targeting -------------------------------------------------------------------------------

    def applies(self, toxic: Toxic) -> bool:
        match = toxic.match
        if match is None:
            return True
        if toxic.networks and not any(self.client_ip in net for net in toxic.networks):
            return False
        if match.contains is not None:
            return match.contains.encode() in self._prefix[: match.within_bytes]
        return True

    @property
    def prefix(self) -> bytes:
        return self._prefix

    def start_sniffing(self, window: int) -> None:
        """Keep the first ``window`` bytes the client sends, for ``match.contains``."""
        self._window = max(window, self._window)
        self.sniffing = len(self._prefix) < self._window

    def sniff(self, data: bytes) -> None:
        before = self._prefix
        self._prefix = (before + data)[: self._window]
        if len(self._prefix) >= self._window:
            self.sniffing = False
        if self._prefix != before:
            newly = [
                t
                for d in Direction
                for t in self.owner.toxics_for(d)
                if t.match is not None
                and t.match.contains is not None
                and t.match.contains.encode() in self._prefix[: t.match.within_bytes]
                and t.match.contains.encode() not in before[: t.match.within_bytes]
            ]
            if newly:
                self.resync()

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.id,
            "client": self.client_text,
            "opened_ns": self.opened_ns,
            "bytes_up": self.up.received,
            "bytes_down": self.down.received,
            "toxics": {
                "upstream": self.up.active_names(),
                "downstream": self.down.active_names(),
            },
        }
