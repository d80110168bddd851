"""Run the benchmarks: each ``bench/bench_*.py`` in its own process, in name order.

``python -m bench`` runs all; ``python -m bench proxy publisher`` runs ``bench_proxy.py`` and
``bench_publisher.py``. Options after the names go to each selected benchmark unchanged
(``python -m bench proxy --quick``). Each benchmark prints its own figures.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def _run(argv: list[str], cwd: Path) -> int:
    """Run one benchmark and wait for it. SIGTERM here is passed on to it, so it stops what it
    started (see :func:`bench.run_stoppable`) rather than being left without a parent; Ctrl-C
    reaches it from the terminal, and here only waits for it to finish stopping."""
    proc = subprocess.Popen(argv, cwd=cwd)

    def forward(signum: int, frame: FrameType | None) -> None:
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward), signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    argv, options = argv[:split], argv[split:]
    found = sorted(here.glob("bench_*.py"))
    wanted = {f"bench_{a.removeprefix('bench_').removesuffix('.py')}" for a in argv}
    selected = [p for p in found if not wanted or p.stem in wanted]
    missing = wanted - {p.stem for p in found}
    if missing:
        names = sorted(m.removeprefix("bench_") for m in missing)
        print(
            f"unknown benchmark(s): {', '.join(names)}; have: "
            + ", ".join(p.stem.removeprefix("bench_") for p in found),
            file=sys.stderr,
        )
        return 2
    failed = 0
    for path in selected:
        print(f"== {path.stem.removeprefix('bench_')}", flush=True)
        rc = _run([sys.executable, "-m", f"bench.{path.stem}", *options], here.parent)
        if rc == 130:  # interrupted: the rest is not wanted either
            return rc
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
