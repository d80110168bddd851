"""Root of the ``aftershock`` command: each part of the system contributes one command group.

Command modules are imported only when their command runs (or its help is asked for): the
root's help and ``--version`` need nothing but this module, so they answer at once. The root's
command list is :data:`COMMANDS`; ``tests/gameday/test_cli.py`` checks it against the commands.
Help is plain text, never wrapped when the output is not a terminal (so it greps), and
``-h`` works everywhere like ``--help``.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from spine import __version__

if TYPE_CHECKING:
    from typer import _click as click


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
        "snapshot, else the analyzers' live results). Exits 1 when Redis knows nothing of it.",
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
        "Write an experiment's events from Kafka to a JSONL file (one event per line).",
        pick="export",
    ),
    "results": Lazy(
        "analyzers.cli",
        "app",
        "Print the live results of an experiment, as analyzer workers stored them in Redis.",
        pick="results",
    ),
}


def _print_version(ctx: click.Context, _param: click.Parameter | None, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(__version__)
        ctx.exit()


def _version_option() -> click.Parameter:
    """A ``--version`` option, as typer builds it."""
    probe = typer.Typer(add_completion=False)
    probe.command()(_with_version)
    return typer.main.get_command(probe).params[0]


def _add_version_option(cmd: click.Command, option: click.Parameter) -> None:
    """``--version`` on ``cmd`` and, for a group, on every command below it."""
    if not any("--version" in p.opts for p in cmd.params):
        cmd.params.append(option)
    for sub in getattr(cmd, "commands", {}).values():
        _add_version_option(sub, option)


_METAVARS = {
    "int": "INTEGER",
    "float": "FLOAT",
    "str": "TEXT",
    "path": "PATH",
    "file": "FILE",
    "bool": "BOOLEAN",
}


class _PlainArgument(TyperArgument):
    """An argument shown by its name alone: ``EXPERIMENT`` in the usage line (``[RUN]`` when
    optional) and in its help row, without a type expression."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def _plain_metavars(cmd: click.Command) -> None:
    """Classic upper-case metavars (``PATH``, ``INTEGER``) instead of type expressions such as
    ``<list[str]>``; arguments by their name (``EXPERIMENT``). Below a group too."""
    ctx = typer.Context(cmd)
    for p in cmd.params:
        if p.metavar is not None:
            continue
        if isinstance(p, TyperArgument):
            p.metavar = (p.name or "").upper()
            p.__class__ = _PlainArgument
            continue
        if getattr(p, "is_flag", False) or getattr(p, "count", False):
            continue
        shown = str(p.display_type(ctx) or "")  # type: ignore[attr-defined]
        inner = shown.strip("<>").removesuffix(" range")
        inner = inner.removeprefix("list[").removesuffix("]")
        if shown.startswith("<") and inner in _METAVARS:
            p.metavar = _METAVARS[inner]
    for sub in getattr(cmd, "commands", {}).values():
        _plain_metavars(sub)


def load(name: str) -> click.Command:
    """Import command ``name`` and build its click command."""
    spec = COMMANDS[name]
    target: Any = getattr(importlib.import_module(spec.module), spec.attr)
    if isinstance(target, typer.Typer):
        target.rich_markup_mode = None
        target._add_completion = False
        cmd = typer.main.get_command(target)
        if spec.pick is not None:
            group: Any = cmd
            cmd = group.commands[spec.pick]
    else:
        single = typer.Typer(rich_markup_mode=None, add_completion=False)
        single.command(name=name)(target)
        cmd = typer.main.get_command(single)
    cmd.name = name
    _plain_metavars(cmd)
    _add_version_option(cmd, _version_option())
    return cmd


class LazyGroup(TyperGroup):
    """The root group: commands of :data:`COMMANDS` are loaded when resolved."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        # Listing the root's commands needs only their help line: a stand-in that loads
        # nothing. Running one goes through resolve_command, which loads it.
        return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help, rich_markup_mode=None)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self.add_command(load(args[0]), args[0])
        return super().resolve_command(ctx, args)


def _context_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
    if not sys.stdout.isatty():  # a pipe or a file: one line per line, for grep
        settings.update(terminal_width=100_000, max_content_width=100_000)
    return settings


def _version_callback(ctx: typer.Context, value: bool) -> None:
    _print_version(ctx, None, value)


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version",
        is_eager=True,
        expose_value=False,
        callback=_version_callback,
        help="Print the Aftershock version and exit.",
    ),
]


def _with_version(_version: VersionOpt = False) -> None:
    """Carries the ``--version`` option (see :func:`_version_option`)."""


app = typer.Typer(
    name="aftershock",
    cls=LazyGroup,
    help="Event-sourced chaos and fault injection: load, faults and resilience analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=_context_settings(),
)


@app.callback()
def _root(_version: VersionOpt = False) -> None:
    """Event-sourced chaos and fault injection: load, faults and resilience analysis."""


@app.command()
def version() -> None:
    """Print the Aftershock version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
