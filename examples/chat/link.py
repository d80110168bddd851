"""The gateway's side of the link to the message service: connects, reconnects with backoff,
and hands every inbound frame to the gateway.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Protocol

from . import wire
from .errors import BadFrame, LinkDown
from .liveness import Silence

if TYPE_CHECKING:
    from .config import ChatConfig

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class LinkListener(Protocol):
    def link_up(self, hello: wire.Frame) -> None: ...

    def link_down(self) -> None: ...

    def link_frame(self, frame: wire.Frame) -> None: ...


class MessageLink:
    def __init__(self, addr: str, listener: LinkListener, config: ChatConfig) -> None:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"message service address must be host:port, got {addr!r}")
        self._host, self._port = host, int(port)
        self._listener = listener
        self._config = config
        self._out: wire.FrameWriter | None = None
        self.state = LinkState.CONNECTING
        self.connects = 0

    def send(self, frame: wire.Frame) -> None:
        if self._out is None or self._out.closing:
            raise LinkDown("no link to the message service")
        self._out.send(frame)

    async def run(self) -> None:
        """Keep the link up until cancelled."""
        delay_s = self._config.backoff_initial_s
        while True:
            self.state = LinkState.CONNECTING
            try:
                async with asyncio.timeout(self._config.redis_timeout_s * 2):
                    reader, writer = await asyncio.open_connection(self._host, self._port)
            except (OSError, TimeoutError) as exc:
                log.debug("message service unreachable: %r", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._config.backoff_max_s)
                continue
            try:
                await self._serve(reader, writer)
                delay_s = self._config.backoff_initial_s
            finally:
                writer.close()
                if self.state is LinkState.UP:
                    self.state = LinkState.DOWN
                    self._out = None
                    self._listener.link_down()
            await asyncio.sleep(delay_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limit = self._config.max_frame_bytes + 4096
        try:
            async with asyncio.timeout(self._config.redis_timeout_s * 2):
                hello = await wire.read_frame(reader, limit)
            if hello is None or hello.get("t") != "hello":
                log.warning("message service sent no hello; reconnecting")
                return
            self._out = wire.FrameWriter(writer)
            self.state = LinkState.UP
            self.connects += 1
            self._listener.link_up(hello)
            silence = Silence(
                self._config.link_timeout_s, self._config.link_timeout_s / 5, "message service"
            )
            async with asyncio.TaskGroup() as tg:
                # The message service sends a status frame every heartbeat; silence means a
                # stalled path (a proxy that stopped forwarding) even while the socket is open.
                watchdog = tg.create_task(silence.watch())
                while (frame := await wire.read_frame(reader, limit)) is not None:
                    silence.heard()
                    self._listener.link_frame(frame)
                watchdog.cancel()
        except* (OSError, TimeoutError, BadFrame) as group:
            log.warning("link to the message service lost: %r", group.exceptions[0])
