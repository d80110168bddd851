"""Bounded disk: old run directories go, by count and by total size, never the current one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from aftershock.gameday.prune import dir_bytes, prune_runs

if TYPE_CHECKING:
    from pathlib import Path


def _run(runs: Path, name: str, size: int, age_s: float) -> Path:
    d = runs / name
    (d / "events").mkdir(parents=True)
    (d / "run.json").write_text("{}")
    (d / "events" / "1.seg").write_bytes(b"x" * size)
    t = 1_700_000_000 - age_s
    os.utime(d, (t, t))
    return d


def test_the_oldest_go_first_by_count_then_by_size_and_the_current_run_stays(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    old = [_run(runs, f"r{i}", 1000, age_s=100 - i) for i in range(5)]  # r0 is the oldest
    (runs / "notes").mkdir()  # not a run directory: never touched
    (runs / "latest").symlink_to("r4")
    current = _run(runs, "now", 10, age_s=1000)  # older mtime, but the run that starts

    got = prune_runs(runs, keep=3, max_bytes=10**9, current=current)
    assert got.removed == old[:3]
    assert sorted(p.name for p in runs.iterdir()) == ["latest", "notes", "now", "r3", "r4"]
    assert got.kept == 3
    assert got.freed_bytes == sum(1000 + 2 for _ in range(3))

    got = prune_runs(runs, keep=10, max_bytes=1500, current=current)
    assert got.removed == [old[3]]  # r3 and r4 took 2 kB: one had to go
    assert got.kept_bytes == dir_bytes(old[4]) + dir_bytes(current) <= 1500

    got = prune_runs(runs, keep=1, max_bytes=0, current=current)
    assert got.removed == [old[4]]
    assert current.is_dir()  # even over both bounds
    assert got.kept == 1
    assert prune_runs(tmp_path / "none", keep=1, max_bytes=0).removed == []
