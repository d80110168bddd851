"""Which upstreams a proxy may forward to, so the server cannot be turned into an open relay."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from injector.proxy.errors import Forbidden
from injector.proxy.proxy import split_host_port

DEFAULT_ALLOWLIST = ("127.0.0.0/8", "::1/128", "localhost")


@dataclass(frozen=True)
class UpstreamAllowlist:
    """Networks (CIDRs) and host names an upstream must be in. Names are matched literally;
    any other name is resolved and every address it resolves to must be in a network."""

    entries: tuple[str, ...] = DEFAULT_ALLOWLIST

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...] | None) -> UpstreamAllowlist:
        if not entries:
            return cls()
        for entry in entries:
            if not entry.strip():
                raise ValueError("empty upstream allowlist entry")
        return cls(tuple(e.strip() for e in entries))

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for entry in self.entries:
            try:
                out.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return out

    def _names(self) -> set[str]:
        return {e.lower() for e in self.entries if not _is_network(e)}

    def _refuse(self, upstream: str, why: str) -> Forbidden:
        return Forbidden(
            f"upstream not allowed: {upstream} ({why}); allowed: {', '.join(self.entries)}"
        )

    async def check(self, upstream: str) -> None:
        """Raise :class:`Forbidden` naming ``upstream`` unless it is allowed."""
        try:
            host, port = split_host_port(upstream)
        except ValueError as exc:
            raise self._refuse(upstream, str(exc)) from None
        if host.lower() in self._names():
            return
        networks = self._networks()
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except socket.gaierror:
                raise self._refuse(upstream, f"cannot resolve {host}") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            if not any(address in net for net in networks):
                raise self._refuse(upstream, f"{address} is outside the allowlist")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
