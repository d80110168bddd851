"""Start-up time of the ``aftershock`` command: ``--help``, ``--version`` and a command's help.

``python -m bench cli`` (env ``BENCH_CLI_RUNS`` sets the runs per command, default 15). Each run
is a fresh process of the installed entry point, output to a pipe, timed wall-clock from spawn
to exit; prints median, best and worst, and the target (0.3 s) for ``--help`` and ``--version``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import run_stoppable

RUNS = int(os.environ.get("BENCH_CLI_RUNS", "15"))
TARGET_S = 0.3
CASES: list[tuple[list[str], bool]] = [
    (["--help"], True),
    (["--version"], True),
    (["version"], False),
    (["run", "--help"], False),
    (["traces", "-h"], False),
]


def _command() -> list[str]:
    here = Path(sys.executable).parent / "aftershock"
    found = str(here) if here.exists() else shutil.which("aftershock")
    return [found] if found else [sys.executable, "-m", "aftershock.cli.main"]


def _time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()}")
    return took


def main() -> None:
    cmd = _command()
    print(f"{' '.join(cmd)}: {RUNS} runs each, wall-clock seconds (spawn to exit)")
    print(f"{'arguments':<16} {'median':>7} {'best':>7} {'worst':>7}  target")
    missed = []
    for args, targeted in CASES:
        _time(cmd + args)  # warm the page cache and bytecode
        times = [_time(cmd + args) for _ in range(RUNS)]
        med = statistics.median(times)
        mark = ""
        if targeted:
            mark = f"< {TARGET_S:g} s " + ("ok" if med < TARGET_S else "MISSED")
            if med >= TARGET_S:
                missed.append(" ".join(args))
        print(f"{' '.join(args):<16} {med:7.3f} {min(times):7.3f} {max(times):7.3f}  {mark}")
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}")
    if missed:
        raise SystemExit(f"over {TARGET_S:g} s: {', '.join(missed)}")


if __name__ == "__main__":
    run_stoppable(main, "nothing")
