"""What a session's spans say about the target, in OpenTelemetry's semantic conventions.

Worked out once per run from the target and the load profile: every span names the server
(``server.address``, ``server.port``), the transport and the application protocol
(``network.transport``, ``network.protocol.name``: ``websocket``, ``http``; none for raw TCP)
and the URL (``url.full``). A WebSocket connect is the HTTP ``GET`` upgrade; a round trip on
HTTP is one request (``http.request.method``, ``url.full`` of the request, and
``http.response.status_code`` once answered); a broadcast is a message sent to a channel
(``messaging.operation.type`` ``send``, ``messaging.destination.name``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.util.types import AttributeValue

from schemas.events import Protocol as WireProtocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from generators.engines.base import Endpoint
    from schemas.load import HttpRequestSpec

Attributes = dict[str, AttributeValue]
MESSAGING_SYSTEM = "aftershock.chat"


def _url(endpoint: Endpoint, scheme: str, path: str | None = None) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{scheme}://{host}:{endpoint.port}{endpoint.path if path is None else path}"


@dataclass(frozen=True)
class SpanAttributes:
    """The attributes of each kind of span of one target's sessions."""

    session: Mapping[str, AttributeValue]
    connect: Mapping[str, AttributeValue]
    round_trip: Mapping[str, AttributeValue]
    broadcast: Mapping[str, AttributeValue] = field(default_factory=dict)
    requests: tuple[Mapping[str, AttributeValue], ...] = ()
    """With a weighted HTTP mix of more than one request: a round trip's attributes per entry
    of the mix, in its order (the engine says which entry a send writes:
    :meth:`~generators.engines.base.Connection.next_request`). Empty otherwise: every round
    trip has ``round_trip``."""

    @classmethod
    def of(
        cls,
        target: str,
        protocol: WireProtocol,
        endpoint: Endpoint,
        http_mix: list[HttpRequestSpec],
    ) -> SpanAttributes:
        server: Attributes = {
            "server.address": endpoint.host,
            "server.port": endpoint.port,
            "network.transport": "tcp",
            "aftershock.target": target,
        }
        session: Attributes = {"aftershock.target": target}
        if protocol is WireProtocol.WS:
            scheme = "wss" if endpoint.secure else "ws"
            ws: Attributes = {
                **server,
                "network.protocol.name": "websocket",
                "url.full": _url(endpoint, scheme),
            }
            return cls(
                session=session,
                connect={**ws, "http.request.method": "GET"},
                round_trip=ws,
                broadcast={
                    **ws,
                    "messaging.system": MESSAGING_SYSTEM,
                    "messaging.operation.type": "send",
                },
            )
        if protocol is WireProtocol.HTTP:
            scheme = "https" if endpoint.secure else "http"
            http: Attributes = {**server, "network.protocol.name": "http"}
            request: Attributes = {**http}
            kinds = [(m.method, m.path) for m in http_mix] or [("POST", endpoint.path)]
            per_kind = tuple(
                {**http, "http.request.method": method, "url.full": _url(endpoint, scheme, path)}
                for method, path in kinds
            )
            single = len(set(kinds)) == 1
            return cls(
                session=session,
                connect={**http, "url.full": _url(endpoint, scheme)},
                round_trip=per_kind[0] if single else request,
                requests=() if single else per_kind,
            )
        return cls(session=session, connect=server, round_trip=server)
