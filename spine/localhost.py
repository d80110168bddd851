"""What every process on this host needs: free loopback ports and enough file descriptors."""

from __future__ import annotations

import contextlib
import resource
import socket

_UNLIMITED_TARGET = 1 << 20
"""Soft limit to ask for when the hard limit is unlimited."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
