"""What every process on this host needs: free loopback ports and enough file descriptors."""

from __future__ import annotations

import contextlib
import random
import resource
import socket
from pathlib import Path

_UNLIMITED_TARGET = 1 << 20
"""Soft limit to ask for when the hard limit is unlimited."""

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
"""Ports below this are left to services people configure by hand."""
_TRIES = 64
_pick = random.SystemRandom()
"""Its own source: a test that seeds the random module must not make two processes (two test
suites side by side) pick the same ports."""
_IANA_DYNAMIC = (49152, 65535)
"""The ephemeral range where the system's is not known (the IANA range, BSD's and macOS')."""


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel gives outgoing connections their local ports from (read on
    Linux; the IANA range elsewhere)."""
    try:
        low, high = (int(x) for x in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return _IANA_DYNAMIC
    return low, high


def free_port(host: str = "127.0.0.1", *, avoid: tuple[int, int] | None = None) -> int:
    """A TCP port free on ``host`` right now, for a server that binds it a moment later.

    Chosen outside ``avoid`` (default: :func:`ephemeral_ports`), from 10000 up: a port the
    kernel picks for a listener on port 0 lies in the range it also gives outgoing
    connections, and on a busy host a client's connection could take it before the server
    binds it. Where that leaves no port free, the kernel's pick (bound, then released)."""
    low, high = avoid if avoid is not None else ephemeral_ports()
    outside = [(a, b) for a, b in ((_LOWEST, low - 1), (max(_LOWEST, high + 1), 65535)) if a <= b]
    if outside:
        sizes = [b - a + 1 for a, b in outside]
        for _ in range(_TRIES):
            n = _pick.randrange(sum(sizes))
            for (a, _b), size in zip(outside, sizes, strict=True):
                if n < size:
                    port = a + n
                    break
                n -= size
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _bindable(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now, in TIME_WAIT or not (no SO_REUSEADDR: a
    port some connection still holds is passed over)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now. SO_REUSEADDR, as servers set it, so
    connections lingering in TIME_WAIT after a restart do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def raise_descriptor_limit(want: int | None = None) -> int:
    """Raise the soft descriptor limit to ``want`` (default: the hard limit), never above the
    hard limit and never lowering it; return the soft limit now in force. Every socket is a
    descriptor, and distributions often start processes at a soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    target = ceiling if want is None else min(want, ceiling)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
