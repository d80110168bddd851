"""Descriptor limits: raise the soft limit at start-up and say when a plan needs more processes."""

from __future__ import annotations

import math

from generators.errors import CapacityError

RESERVED_FDS = 100
"""Descriptors kept for the event publisher, Redis, logs and the interpreter itself."""


def raise_fd_limit(want: int = 20_000) -> int:
    """Raise the soft descriptor limit towards ``want`` (never above the hard limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return want
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def check_capacity(sessions: int, sockets_per_session: int = 1, limit: int | None = None) -> None:
    """Raise :class:`CapacityError` naming how many processes the plan needs."""
    fd_limit = limit if limit is not None else raise_fd_limit()
    usable = max(1, fd_limit - RESERVED_FDS)
    need = sessions * sockets_per_session
    if need > usable:
        processes = math.ceil(need / usable)
        raise CapacityError(
            f"this process may open {fd_limit} descriptors but its share of the plan needs "
            f"{need} sockets ({sessions} sessions); run at least {processes} generator "
            f"processes (--processes {processes})"
        )
