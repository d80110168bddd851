"""The ``aftershock`` command line: the root's table of commands against the commands, ``-h``
and ``--version`` everywhere, help that greps (no wrapping in a pipe, no type expressions),
and the quick answers of the entry point matching the full command line."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from aftershock.cli.commands import COMMANDS, root_help
from aftershock.cli.main import app, load
from spine import __version__

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from tests.processes import Processes

TYPE_EXPRESSION = re.compile(r"<(?:str|int|float|bool|path|file|list\[[^\]]*\])[^>]*>")


def _flat(text: str | None) -> str:
    return " ".join((text or "").split())


def _all_commands() -> list[list[str]]:
    paths: list[list[str]] = []
    for name in COMMANDS:
        cmd = load(name)
        paths.append([name])
        paths.extend([name, sub] for sub in getattr(cmd, "commands", {}))
    return paths


@pytest.mark.parametrize("name", list(COMMANDS))
def test_root_table_says_what_the_command_says(name: str) -> None:
    cmd = load(name)
    assert _flat(cmd.help).startswith(_flat(COMMANDS[name].help)), name


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_every_command_takes_h_and_version_and_renders_plainly(path: list[str]) -> None:
    runner = CliRunner()
    short = runner.invoke(app, [*path, "-h"])
    assert short.exit_code == 0, short.output
    long = runner.invoke(app, [*path, "--help"])
    assert short.output == long.output
    assert short.output.startswith(f"Usage: aftershock {' '.join(path)} ")
    assert not TYPE_EXPRESSION.search(short.output), short.output
    assert "…" not in short.output
    assert "╭" not in short.output
    version = runner.invoke(app, [*path, "--version"])
    assert version.exit_code == 0, version.output
    assert version.output == f"{__version__}\n"


def test_help_is_not_wrapped_in_a_pipe() -> None:
    out = CliRunner().invoke(app, ["run", "-h"]).output
    doc = _flat(load("run").help)
    assert f"  {doc}\n" in out  # the whole description on one line
    option = next(line for line in out.splitlines() if line.lstrip().startswith("--sample"))
    assert option.rstrip().endswith("gateway, message and redis).")


def test_quick_answers_match_the_full_command_line(procs: Processes) -> None:
    def entry(*args: str) -> subprocess.CompletedProcess[str]:
        return procs.run(
            [sys.executable, "-m", "aftershock.cli.entry", *args], text=True, timeout=60
        )

    full = CliRunner().invoke(app, ["--help"])
    assert full.exit_code == 0
    assert full.output == root_help(None)
    for flag in ("--help", "-h"):
        quick = entry(flag)
        assert quick.returncode == 0
        assert quick.stdout == full.output
    for args in (["--version"], ["version"]):
        quick = entry(*args)
        assert quick.returncode == 0
        assert quick.stdout == CliRunner().invoke(app, args).output == f"{__version__}\n"
    # anything else goes to the full command line
    unknown = entry("no-such-command")
    assert unknown.returncode == 2
    assert "No such command 'no-such-command'" in unknown.stderr


def test_run_json_for_a_game_day_that_cannot_run(tmp_path: Path, procs: Processes) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1.0.0\ntitle: x\nmethod: [\n")  # not valid YAML
    export = tmp_path / "summary.json"
    proc = procs.run(
        [sys.executable, "-m", "aftershock.cli.entry", "run", str(bad), "--json",
         "--summary-export", str(export)],
        text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)  # stdout holds the document and nothing else
    assert doc == json.loads(export.read_text())
    assert (doc["exit_code"], doc["outcome"], doc["verdict"]) == (2, "ERROR", None)
    assert doc["error"].startswith(f"{bad}: 1 problem(s)")
    assert f"{bad}:4:1: <top>: not valid YAML" in doc["error"]
    assert f"error: {bad}: 1 problem(s)" in proc.stderr
