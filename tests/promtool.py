"""``promtool check metrics`` on a scraped metrics page, where Prometheus' promtool is installed
(Debian's ``prometheus`` package; ``.ci/run`` installs it). Without it the check does nothing."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.processes import Processes


def promtool_installed() -> bool:
    return shutil.which("promtool") is not None


def check_metrics(procs: Processes, text: str) -> None:
    """Assert that promtool finds no problem in ``text`` (a metrics page); promtool runs
    through the test's ``procs``."""
    exe = shutil.which("promtool")
    if exe is None:
        return
    proc = procs.run([exe, "check", "metrics"], input=text, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool check metrics:\n{proc.stdout}{proc.stderr}\n{text}"
