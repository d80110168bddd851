"""Bounded disk: old run directories are deleted, by count and by total size.

Called when a run starts (``aftershock run``, and each round of ``run --continuous``), with
``Settings.runs_keep`` and ``Settings.runs_max_bytes``. The oldest go first (by the time their
directory was last modified); the run that starts is never deleted, nor anything that is not a
run directory (a run directory holds ``run.json`` or ``analysis.json``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aftershock.report.files import ANALYSIS_FILE, META_FILE

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Pruned:
    removed: list[Path]
    freed_bytes: int
    kept: int
    kept_bytes: int


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _is_run(path: Path) -> bool:
    return (
        path.is_dir()
        and not path.is_symlink()
        and ((path / META_FILE).exists() or (path / ANALYSIS_FILE).exists())
    )


def prune_runs(runs_dir: Path, *, keep: int, max_bytes: int, current: Path | None = None) -> Pruned:
    """Delete the oldest run directories under ``runs_dir`` until at most ``keep`` remain and
    they take at most ``max_bytes`` together; ``current`` is never deleted (and counts)."""
    if not runs_dir.is_dir():
        return Pruned([], 0, 0, 0)
    runs = []
    for p in runs_dir.iterdir():
        if _is_run(p) or (current is not None and p == current):
            with contextlib.suppress(OSError):
                runs.append((p.stat().st_mtime, p, dir_bytes(p)))
    runs.sort(key=lambda r: (r[1] == current, r[0]))  # oldest first, the current one last
    total = sum(size for _, _, size in runs)
    count = len(runs)
    removed: list[Path] = []
    freed = 0
    for _, path, size in runs:
        if count <= keep and total <= max_bytes:
            break
        if path == current:
            break
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        freed += size
        total -= size
        count -= 1
    return Pruned(removed, freed, count, total)
