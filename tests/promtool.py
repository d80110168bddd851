"""``promtool check metrics`` on a scraped metrics page, where Prometheus' promtool is installed
(Debian's ``prometheus`` package; ``.ci/run`` installs it). Without it the check does nothing."""

from __future__ import annotations

import shutil
import subprocess


def promtool_installed() -> bool:
    return shutil.which("promtool") is not None


def check_metrics(text: str) -> None:
    """Assert that promtool finds no problem in ``text`` (a metrics page)."""
    exe = shutil.which("promtool")
    if exe is None:
        return
    proc = subprocess.run(
        [exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"promtool check metrics:\n{proc.stdout}{proc.stderr}\n{text}"
