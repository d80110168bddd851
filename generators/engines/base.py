"""The engine interface every protocol implements.

An engine opens :class:`Connection` objects. Sending is a plain, non-blocking call (it buffers
in the transport) so one shared timer tick can drive thousands of sessions without a task per
send; received messages and the end of the connection arrive as callbacks on a
:class:`MessageHandler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from generators.errors import PlanError
from schemas.address import split_address

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from schemas.events import Protocol as WireProtocol

ClosedBy = Literal["client", "server", "error"]


class Closed(NamedTuple):
    """How a connection ended: who ended it, the close code if any, and why."""

    by: ClosedBy
    code: int | None
    reason: str
    idle: bool = False
    """The server ended it with nothing outstanding, as its protocol allows (an HTTP server
    closing an idle keep-alive connection): not a failure."""
    unwritten: tuple[int, ...] = ()
    """Seqs that were queued on the connection and never written."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    path: str = "/"
    secure: bool = False

    @classmethod
    def parse(cls, address: str, path: str = "/") -> Endpoint:
        """``host:port`` or ``[IPv6]:port``; raises ``PlanError`` naming ``address`` otherwise.

        The port is 1-65535 in ASCII digits; the host a name the resolver can encode, an IPv4
        address, or an IPv6 address in brackets."""
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise PlanError(f"invalid address {address!r}: {exc}") from None
        return cls(host=host, port=port, path=path or "/")

    def url(self, scheme: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path}"


class MessageHandler(Protocol):
    def on_message(self, data: str, status: int | None, seq: int | None) -> None:
        """One whole message arrived. ``status``/``seq`` are set by request/response engines
        (HTTP) for the response to the request sent with that ``seq``."""

    def on_closed(self, closed: Closed) -> None:
        """The connection ended (called once, also after :meth:`Connection.close`)."""


class Connection(Protocol):
    @property
    def is_open(self) -> bool: ...

    def send(self, data: str, seq: int, traceparent: str | None = None) -> None:
        """Queue one message; never blocks. Raises ``ConnectionLost`` when already closed.

        ``traceparent`` (W3C) travels with the message where the protocol has per-message
        headers (HTTP requests); streaming protocols carry it once, in the handshake."""

    def next_request(self) -> int:
        """The entry of the request mix (its index) that the next :meth:`send` writes: drawn
        now and kept for that send, so a span started before the send names the request that
        really leaves (HTTP's weighted mix). 0 for protocols without a mix."""

    def set_header(self, name: str, value: str) -> None:
        """Change a header used on later requests (HTTP); no-op for streaming protocols."""

    @property
    def busy(self) -> bool:
        """True while a message sent now could not leave on time: an HTTP/1.1 connection with
        its requests in flight and one more already waiting. Streaming connections never are."""

    def expire(self, seq: int) -> Sequence[int]:
        """The answer to ``seq`` is overdue and no longer awaited. Returns the seqs this gives
        up that never left (``seq`` among them if it was still waiting to be written).

        Streaming connections do nothing. An HTTP/1.1 connection closes (as HTTP clients do on
        a timeout): the requests queued behind the lost answer are given up unwritten."""

    async def close(self, code: int = 1000) -> None:
        """Close politely within a bounded time, then hard. Idempotent."""


class Engine(Protocol):
    name: str
    protocol: WireProtocol

    async def connect(
        self,
        endpoint: Endpoint,
        handler: MessageHandler,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> Connection:
        """Open a connection, raising ``ConnectError``/``HandshakeError`` on failure."""
