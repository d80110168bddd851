"""Network addresses as run files and experiments write them: ``host:port`` or
``[IPv6 address]:port``. One grammar for every place that reads a target's address (the
models here, the generators' endpoints), so what validates is what can be dialled."""

from __future__ import annotations

import ipaddress


def split_address(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[IPv6]:port`` (the host without brackets).

    The port is ASCII digits, 1-65535 (0 too with ``port_zero``: a listener whose port the
    system picks); the host an IPv4 address, a name the resolver can encode, or an IPv6
    address in brackets. Raises ``ValueError`` saying what is wrong (without the address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port, or [IPv6 address]:port")
    low = 0 if port_zero else 1
    if not (port.isascii() and port.isdigit() and low <= int(port) <= 65535):
        raise ValueError(f"the port must be a number from {low} to 65535, not {port!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, as in [::1]:8080")
    elif any(c.isspace() or not c.isprintable() or c in "/?#@[]" for c in host):
        raise ValueError(f"{host!r} is not a host name")
    else:
        try:
            # The resolver raises UnicodeError, not OSError, for a name IDNA cannot encode.
            host.encode("idna")
        except UnicodeError:
            raise ValueError(f"{host!r} is not a host name (an empty or overlong label)") from None
    return host, int(port)
