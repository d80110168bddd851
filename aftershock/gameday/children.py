"""Child processes of a run (the sample system, analyzer workers) must not outlive it.

They start in their own session, so a Ctrl-C at the terminal reaches the run alone, which
stops them in order (an analyzer worker that got the Ctrl-C too would quit before judging the
run it is meant to judge)."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for a child: on Linux, the kernel sends it SIGTERM when the run process
    dies, even by SIGKILL, so no sample system or worker is left behind. Elsewhere a no-op
    (the run still stops its children on every orderly exit)."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
