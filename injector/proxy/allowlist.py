"""Where proxies may listen and which upstreams they may reach, so the server can be turned
neither into an open relay nor into a door from the network to loopback services.

Upstreams are checked twice: when the API is asked (a refusal is a 403 naming the upstream;
a name that does not resolve is kept, as Toxiproxy keeps it) and again on every connection,
against the address actually dialled, so a name that resolves elsewhere later (DNS rebinding)
never reaches a forbidden address. Resolution never happens under the API lock.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from injector.proxy.errors import BadRequest, Forbidden, ListenError

DEFAULT_ALLOWLIST = ("127.0.0.0/8", "::1/128", "localhost")
DEFAULT_LISTEN = ("127.0.0.0/8", "::1/128")
RESOLVE_TIMEOUT_S = 5.0
"""A check at API time gives up on a resolver slower than this (and keeps the name)."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IpAddress]]]
"""``(host, port) -> addresses``; an empty list when the name does not resolve."""


def split_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` like Go's ``net.SplitHostPort``; raises ValueError."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"address {text}: missing port in address")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {text}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {text}: too many colons in address")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"address {text}: invalid port")
    port = int(port_text) if port_text else 0
    if not 0 <= port <= 65535:
        raise ValueError(f"address {text}: invalid port")
    return host, port


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ip_literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_problem(host: str) -> str | None:
    """Why ``host`` can never be dialled (None if it can be tried): the resolver encodes
    names with IDNA, which refuses empty labels and labels over 63 characters."""
    if not host:
        return "missing host"
    if ip_literal(host) is not None:
        return None
    if any(c.isspace() or not c.isprintable() for c in host):
        return "host name has a space or control character"
    try:
        encoded = host.encode("idna")
    except UnicodeError as exc:
        reason = str(exc).rpartition("UnicodeError: ")[2].rstrip(")") or "invalid label"
        return f"host name cannot be IDNA-encoded: {reason}"
    if len(encoded) > 253:
        return "host name longer than 253 characters"
    return None


def parse_upstream(upstream: str) -> tuple[str, int]:
    """``host:port`` of an upstream, or a 400 naming what is wrong."""
    try:
        host, port = split_host_port(upstream)
    except ValueError as exc:
        raise BadRequest.body(f"upstream: {exc}") from None
    problem = host_problem(host)
    if problem is not None:
        raise BadRequest.body(f"upstream: {upstream}: {problem}")
    return host, port


def _networks(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return tuple(out)


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class UpstreamAllowlist:
    """Networks (CIDRs) and host names an upstream must be in. Names are matched literally and
    dialled by name; any other name is resolved on every dial and only its allowed addresses
    are dialled. ``allow_any`` turns the check off (``--allow-any-upstream``)."""

    entries: tuple[str, ...] = DEFAULT_ALLOWLIST
    allow_any: bool = False
    resolver: Resolver = field(default=lambda host, port: resolve(host, port), repr=False)
    networks: tuple[IpNetwork, ...] = field(init=False, repr=False)
    names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "networks", _networks(self.entries))
        names = frozenset(e.lower() for e in self.entries if not _is_network(e))
        object.__setattr__(self, "names", names)

    @classmethod
    def parse(
        cls, entries: list[str] | tuple[str, ...] | None, *, allow_any: bool = False
    ) -> UpstreamAllowlist:
        if not entries:
            return cls(allow_any=allow_any)
        for entry in entries:
            if not entry.strip():
                raise ValueError("empty upstream allowlist entry")
        return cls(tuple(e.strip() for e in entries), allow_any=allow_any)

    def allows(self, address: IpAddress) -> bool:
        if self.allow_any:
            return True
        address = getattr(address, "ipv4_mapped", None) or address
        return any(address in net for net in self.networks)

    def trusts_name(self, host: str) -> bool:
        """The name is allowed as such (dialled by name, whatever it resolves to)."""
        return self.allow_any or host.lower() in self.names

    def _refuse(self, upstream: str, why: str) -> Forbidden:
        allowed = "any" if self.allow_any else ", ".join(self.entries)
        return Forbidden(f"upstream not allowed: {upstream} ({why}); allowed: {allowed}")

    async def check(self, upstream: str) -> None:
        """At API time: a 400 if ``upstream`` cannot be an address, a 403 naming it if it is
        (or resolves now to) an address outside the list. A name that does not resolve is
        accepted: every dial checks again."""
        host, port = parse_upstream(upstream)
        if self.trusts_name(host):
            return
        literal = ip_literal(host)
        if literal is not None:
            if not self.allows(literal):
                raise self._refuse(upstream, f"{literal} is outside the allowlist")
            return
        for address in await self.resolver(host, port):
            if not self.allows(address):
                raise self._refuse(upstream, f"{address} is outside the allowlist")

    def literal_targets(self, host: str, port: int) -> list[tuple[str, int]]:
        """:meth:`dial_targets` for an address or a trusted name: no resolving needed."""
        literal = ip_literal(host)
        if self.trusts_name(host) or (literal is not None and self.allows(literal)):
            return [(host, port)]
        return []

    async def dial_targets(self, host: str, port: int) -> list[tuple[str, int]]:
        """Per connection: the addresses to dial for ``host`` (none if nothing is allowed)."""
        if self.trusts_name(host) or ip_literal(host) is not None:
            return self.literal_targets(host, port)
        return [(str(a), port) for a in await self.resolver(host, port) if self.allows(a)]


async def resolve(host: str, port: int) -> list[IpAddress]:
    """The addresses ``host`` resolves to now; none if it does not resolve (in time)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError, TimeoutError):
        return []
    out: list[IpAddress] = []
    for info in infos:
        address = ip_literal(str(info[4][0]).split("%")[0])
        if address is not None and address not in out:
            out.append(address)
    return out


@dataclass(frozen=True)
class ListenAllowlist:
    """Where proxies may listen: loopback unless the operator allows more networks
    (``--allow-listen CIDR``). ``0.0.0.0`` and ``::`` (every interface) bind loopback unless
    allowed, so clients that ask for every interface by default (chaostoolkit-toxiproxy) work
    without opening a door; any other address outside the list is a 403. Names other than
    ``localhost`` are refused: binding them would mean resolving them under the API lock."""

    entries: tuple[str, ...] = DEFAULT_LISTEN
    networks: tuple[IpNetwork, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "networks", _networks(self.entries))

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...] | None) -> ListenAllowlist:
        if not entries:
            return cls()
        for entry in entries:
            if not _is_network(entry.strip()):
                raise ValueError(f"not a CIDR: {entry!r}")
        return cls((*DEFAULT_LISTEN, *(e.strip() for e in entries)))

    def bind_address(self, listen: str) -> tuple[str, int]:
        """The (host, port) to bind for ``listen``: ListenError (500, as Toxiproxy answers)
        if it is not an address, Forbidden (403) if it is outside the list."""
        if not listen:
            return "127.0.0.1", 0
        try:
            host, port = split_host_port(listen)
        except ValueError as exc:
            raise ListenError(f"listen tcp: {exc}") from None
        if host in ("", "localhost"):
            return "127.0.0.1", port
        literal = ip_literal(host)
        if literal is None:
            raise Forbidden(
                f"listen not allowed: {listen} (give an address, not a host name; "
                f"allowed: localhost, {', '.join(self.entries)})"
            )
        if any(literal in net for net in self.networks):
            return host, port
        if literal.is_unspecified:
            return ("::1" if literal.version == 6 else "127.0.0.1"), port
        raise Forbidden(
            f"listen not allowed: {listen} ({literal} is outside the listen allowlist; "
            f"allowed: {', '.join(self.entries)})"
        )
