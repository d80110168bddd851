"""One clock origin per process, shared by everything in it that writes events.

Events carry ``ts_ns`` (wall clock, ns since the epoch) and ``mono_ns`` (monotonic ns since the
producer's origin). Every producer in a process — each load profile's recorder, the injector,
the fault proxy — stamps from this one origin, and ``ts_ns`` is the wall clock read once at the
origin plus the monotonic time since. ``ts_ns - mono_ns`` is then a single constant per
process, so the analyzers' time base (:mod:`analyzers.core.ordering`) gives every event the
same time whichever event of a producer it happens to see first: live in process, in a worker
or in replay, bit for bit. A wall-clock step while the process runs does not move its
timestamps (the monotonic clock still follows NTP's rate corrections).
"""

from __future__ import annotations

import time

WALL0_NS = time.time_ns()
"""The wall clock at the process's origin."""
MONO0_NS = time.monotonic_ns()
"""The monotonic clock at the process's origin."""


def stamp() -> tuple[int, int]:
    """``(ts_ns, mono_ns)`` for an event written now."""
    mono = time.monotonic_ns() - MONO0_NS
    return WALL0_NS + mono, mono


def now_ns() -> int:
    """The process's event time now (``ts_ns`` of an event written now)."""
    return WALL0_NS + time.monotonic_ns() - MONO0_NS
