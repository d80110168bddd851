"""Descriptor limits: raise the soft limit at start-up and say when a plan needs more processes."""

from __future__ import annotations

import math

from generators.errors import CapacityError
from spine.localhost import raise_descriptor_limit

FD_WANT = 20_000
"""Descriptors a generator asks for: the cap of one process on these machines."""

RESERVED_FDS = 100
"""Descriptors kept for the event publisher, Redis, logs and the interpreter itself."""


def check_capacity(sessions: int, sockets_per_session: int = 1, limit: int | None = None) -> None:
    """Raise :class:`CapacityError` naming how many processes the plan needs."""
    fd_limit = limit if limit is not None else raise_descriptor_limit(FD_WANT)
    usable = max(1, fd_limit - RESERVED_FDS)
    need = sessions * sockets_per_session
    if need > usable:
        processes = math.ceil(need / usable)
        raise CapacityError(
            f"this process may open {fd_limit} descriptors but its share of the plan needs "
            f"{need} sockets ({sessions} sessions); run at least {processes} generator "
            f"processes (--processes {processes})"
        )
