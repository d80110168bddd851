"""Load shapes: when each session of the population starts, as a pure function of the ramp.

``start_offsets(ramp, n)[i]`` is the second, counted from the start of the load phase, at which
the i-th session (in assignment order) begins to connect. ``planned_active`` turns that back
into "how many sessions should have started by time t", which is what tests compare against.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schemas.load import RampShape


def start_offsets(ramp: RampShape, n: int) -> list[float]:
    if n <= 0:
        return []
    shape = ramp.shape
    if shape == "constant" or (ramp.ramp_s == 0 and shape != "burst"):
        base = [0.0] * n
    elif shape == "linear":
        base = [ramp.ramp_s * i / n for i in range(n)]
    elif shape == "exponential":
        # Active count grows as 2^(k·t): 1 session at t=0, all n at t=ramp_s.
        scale = math.log2(n) if n > 1 else 1.0
        base = [ramp.ramp_s * math.log2(i + 1) / scale if n > 1 else 0.0 for i in range(n)]
    elif shape == "stepped":
        # Step k (1..steps) brings the active count to round(n·k/steps) at t = ramp_s·k/steps.
        base = []
        done = 0
        for k in range(1, ramp.steps + 1):
            upto = round(n * k / ramp.steps)
            base.extend([ramp.ramp_s * k / ramp.steps] * (upto - done))
            done = upto
    else:  # burst
        base = [(i // ramp.burst_size) * ramp.burst_every_s for i in range(n)]
    stagger = ramp.stagger_ms / 1000.0
    if stagger > 0:
        out: list[float] = []
        prev = -math.inf
        for t in base:
            prev = round(max(t, prev + stagger), 6)
            out.append(prev)
        return out
    return [round(t, 6) for t in base]


def planned_active(offsets: Sequence[float], t: float) -> int:
    """How many sessions should have started by ``t`` (offsets must be sorted)."""
    return bisect.bisect_right(offsets, t + 1e-9)


def stability_levels(start: int, step: int, maximum: int, factor: float = 1.0) -> list[int]:
    """Concurrency levels for a stability search: ``start``, then +``step`` (or ×``factor``
    when ``factor > 1``), up to ``maximum``."""
    if start < 1 or maximum < start:
        raise ValueError("need 1 <= start <= maximum")
    levels = [start]
    while levels[-1] < maximum:
        nxt = int(levels[-1] * factor) if factor > 1 else levels[-1] + step
        nxt = max(nxt, levels[-1] + 1)
        levels.append(min(nxt, maximum))
    return levels
