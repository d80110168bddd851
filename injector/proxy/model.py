"""The API-level state of toxics: what ``POST /proxies/{p}/toxics`` creates and lists."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from injector.proxy.gojson import Float32

if TYPE_CHECKING:
    import asyncio

    from injector.proxy.toxics import ToxicConfig, ToxicType

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Direction(StrEnum):
    UPSTREAM = "upstream"
    """client → server"""
    DOWNSTREAM = "downstream"
    """server → client"""


class Match(BaseModel):
    """Per-client targeting: a toxic with a match applies only to matching connections.

    ``clients`` are CIDRs (or bare addresses) of client sockets; ``contains`` is text that must
    appear within the first ``within_bytes`` bytes the client sends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    clients: tuple[str, ...] = ()
    contains: str | None = None
    within_bytes: Annotated[int, Field(ge=1, le=1 << 20)] = 4096

    @field_validator("clients", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("clients")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address or CIDR") from exc
        return value

    def networks(self) -> tuple[IpNetwork, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.clients)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.clients:
            out["clients"] = list(self.clients)
        if self.contains is not None:
            out["contains"] = self.contains
            out["within_bytes"] = self.within_bytes
        return out


@dataclass
class Toxic:
    """One toxic of one proxy."""

    name: str
    kind: ToxicType
    type_as_sent: str
    stream_as_sent: str
    direction: Direction
    toxicity: float
    config: ToxicConfig
    match: Match | None = None
    ttl_ms: int | None = None
    lease: asyncio.TimerHandle | None = field(default=None, repr=False)
    networks: tuple[IpNetwork, ...] = ()

    def attributes(self) -> dict[str, object]:
        return self.config.model_dump()

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "attributes": self.attributes(),
            "name": self.name,
            "type": self.type_as_sent,
            "stream": self.stream_as_sent,
            "toxicity": Float32(self.toxicity),
        }
        if self.ttl_ms is not None:
            out["ttl_ms"] = self.ttl_ms
        if self.match is not None:
            out["match"] = self.match.as_json()
        return out
