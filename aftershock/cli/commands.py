"""The ``aftershock`` command's table of commands and its root help, without importing typer.

:func:`aftershock.cli.entry.main` answers ``aftershock --help``, ``-h``, ``--version`` and
``version`` from here alone, so they return at once; everything else goes through
:mod:`aftershock.cli.main`, whose root group renders its help with :func:`root_help` too (one
rendering, whichever way it is reached).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import NamedTuple

ROOT_HELP = "Event-sourced chaos and fault injection: load, faults and resilience analysis."
ROOT_OPTIONS = (
    ("--version", "Print the Aftershock version and exit."),
    ("-h, --help", "Show this message and exit."),
)
EXTRA_COMMANDS = (("version", "Print the Aftershock version."),)
"""Commands defined in :mod:`aftershock.cli.main` itself."""


class Lazy(NamedTuple):
    module: str
    attr: str
    """A command function, or a ``typer.Typer`` (a command group)."""
    help: str
    """The line the root's help shows for it (the command's own first help line)."""
    pick: str | None = None
    """For a Typer whose commands join the root's: the one to take."""


COMMANDS: dict[str, Lazy] = {
    "demo": Lazy(
        "aftershock.cli.demo",
        "demo",
        "Run the shipped game day against the sample chat system (isolation defect on) and "
        "write its report; exits 1 with the failing SLOs named, as that game day is meant to.",
    ),
    "run": Lazy(
        "aftershock.cli.gameday",
        "run",
        "Run a game day: load, faults, live analysis and dashboard, then the verdict and the "
        "report in runs/<run_id>/. Exit status: 0 pass, 1 fail (failing SLOs named), 2 error or "
        "interrupted.",
    ),
    "report": Lazy(
        "aftershock.cli.gameday",
        "report",
        "Regenerate a run's report (report.html, results.json, summary.md, junit.xml) from its "
        "event log. Exits 0 when the run's verdict passed, 1 when it failed, 2 on error.",
    ),
    "traces": Lazy(
        "aftershock.cli.gameday",
        "traces",
        "Print session traces as trees, with the faults active at each span and the session's "
        "events beside the span they belong to. Exits 1 when no trace matches.",
    ),
    "dashboard": Lazy(
        "aftershock.cli.gameday",
        "dashboard",
        "Watch a game day running elsewhere: the live dashboard, read from Redis (the run's own "
        "snapshot, else the analyzers' live results). Exits 1 when Redis knows nothing of it; "
        "Ctrl-C ends it (0), within 10 s whatever Redis does.",
    ),
    "validate": Lazy(
        "injector.cli",
        "validate",
        "Check an experiment file; print every problem with its path and line. Exit 1 on any.",
    ),
    "generate": Lazy(
        "generators.cli",
        "generate",
        "Run load profiles against their targets, recording every session event.",
    ),
    "stack": Lazy(
        "aftershock.cli.stack",
        "app",
        "Run the embedded stack: a Tansu Kafka broker and a Valkey server on 127.0.0.1.",
    ),
    "proxy": Lazy("injector.proxy.cli", "app", "The Toxiproxy-compatible fault proxy."),
    "injector": Lazy(
        "injector.cli",
        "injector_app",
        "Run experiment timelines against the fault proxy; clean up after dead runs.",
    ),
    "control": Lazy(
        "injector.cli",
        "control_app",
        "Game-day controls for a running experiment (through Redis).",
    ),
    "analyze": Lazy(
        "analyzers.cli",
        "app",
        "Start an analyzer worker (Faust) on the events topic; runs until interrupted.",
        pick="analyze",
    ),
    "replay": Lazy(
        "analyzers.cli",
        "app",
        "Recompute every result of an experiment from the log and print them.",
        pick="replay",
    ),
    "export": Lazy(
        "analyzers.cli",
        "app",
        "Write events as JSON lines (one event per line, each event_id once): an experiment's "
        "from Kafka, or a run's from its local log.",
        pick="export",
    ),
    "results": Lazy(
        "analyzers.cli",
        "app",
        "Print the live results of an experiment, as analyzer workers stored them in Redis.",
        pick="results",
    ),
}


def help_width() -> int | None:
    """Columns to wrap help at: the terminal's, or None (no wrapping) when stdout is not a
    terminal, so each line of help stays one line for grep."""
    if not sys.stdout.isatty():
        return None
    return max(shutil.get_terminal_size().columns - 2, 50)


def _rows(rows: tuple[tuple[str, str], ...], width: int | None) -> list[str]:
    first = max(len(name) for name, _ in rows) + 2
    out = []
    for name, text in rows:
        lead = f"  {name:<{first}}"
        if width is None or width - len(lead) < 20:
            out.append(lead + text)
            continue
        wrapped = textwrap.wrap(text, width - len(lead)) or [""]
        out.append(lead + wrapped[0])
        out.extend(" " * len(lead) + line for line in wrapped[1:])
    return out


def root_help(width: int | None) -> str:
    """The root's help text (``width``: wrap at that many columns; None: no wrapping)."""
    about = [ROOT_HELP] if width is None else textwrap.wrap(ROOT_HELP, width - 2)
    commands = tuple((name, c.help) for name, c in COMMANDS.items()) + EXTRA_COMMANDS
    lines = [
        "Usage: aftershock [OPTIONS] COMMAND [ARGS]...",
        "",
        *(f"  {line}" for line in about),
        "",
        "Options:",
        *_rows(ROOT_OPTIONS, width),
        "",
        "Commands:",
        *_rows(commands, width),
    ]
    return "\n".join(lines) + "\n"
