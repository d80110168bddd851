"""Benchmarks. ``python -m bench [NAME ...]`` runs every ``bench_*.py`` here (or those named)."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType


def run_stoppable(entry: Callable[[], object], started: str) -> None:
    """Run a benchmark's entry point so that SIGTERM (``timeout``, or ``python -m bench``
    being stopped) ends it as Ctrl-C does: ``KeyboardInterrupt``, so its ``finally`` blocks
    stop ``started`` (what it runs beside itself) rather than leave it without a parent; exit
    status 130."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        entry()
    except KeyboardInterrupt:
        print(f"interrupted; {started} stopped", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: `timeout` signals the whole process group and `python -m bench` passes the signal
    # on too, and a second KeyboardInterrupt would cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
