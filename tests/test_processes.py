"""The ``procs`` fixture: a test's processes are stopped, reaped and their pipes closed however
the test ends, so no test fails another through a ResourceWarning; and every test uses it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from tests.processes import Processes

TESTS = Path(__file__).parent
ROOT = TESTS.parent

_STARTS_A_PROCESS = re.compile(
    r"subprocess\.(run|Popen|call|check_call|check_output)\(|create_subprocess_(exec|shell)\("
    r"|os\.(posix_spawn|fork|system)\("
)

_INNER = """
import asyncio, subprocess, sys, time
import pytest

CHILD = [sys.executable, "-c", "import os, sys, time; print(os.getpid(), flush=True); "
         "sys.stderr.write('x' * 200000); time.sleep(600)"]

def note(tmp_path, line):
    with (tmp_path.parent / "pids").open("a") as f:
        f.write(line)

def test_fails_with_a_child_running(procs, tmp_path):
    p = procs.popen(CHILD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    note(tmp_path, p.stdout.readline())
    assert False, "fails on purpose"

@pytest.mark.timeout(3)
def test_times_out_with_a_child_running(procs, tmp_path):
    p = procs.popen(CHILD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    note(tmp_path, p.stdout.readline())
    p.communicate()

async def test_fails_with_an_async_child_running(procs, tmp_path):
    p = await procs.exec(*CHILD, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    note(tmp_path, (await p.stdout.readline()).decode())
    assert False, "fails on purpose"

def test_after_them_all(procs):
    assert procs.run([sys.executable, "-c", "print('ok')"], text=True, timeout=60).stdout == "ok\\n"
"""


def test_every_test_starts_its_processes_through_the_fixture() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "processes.py" and path != Path(__file__)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _STARTS_A_PROCESS.search(line)
    ]
    assert offenders == [], "start processes through the procs fixture (tests/processes.py)"


def test_failing_and_timed_out_tests_leave_no_process_and_no_pipe(
    procs: Processes, tmp_path: Path
) -> None:
    (tmp_path / "test_inner.py").write_text(_INNER)
    base = tmp_path / "base"
    inner = procs.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "--basetemp", str(base),
         str(tmp_path / "test_inner.py")],
        cwd=ROOT, text=True, timeout=240,
    )  # fmt: skip
    summary = inner.stdout.strip().splitlines()[-1]
    assert summary.startswith("3 failed, 1 passed in"), inner.stdout[-3000:]
    assert "ResourceWarning" not in inner.stdout + inner.stderr
    assert "Timeout" in inner.stdout
    pids = [int(p) for p in (base / "pids").read_text().split()]
    assert len(pids) == 3
    assert not [p for p in pids if psutil.pid_exists(p)]
