"""Root of the ``aftershock`` command: each part of the system contributes one command group.

Command modules are imported only when their command runs (or its help is asked for); the
root's own help is rendered from the table :data:`~aftershock.cli.commands.COMMANDS`, which
``tests/gameday/test_cli.py`` checks against the commands, and ``aftershock --help`` and
``--version`` are answered before this module is even imported (:mod:`aftershock.cli.entry`).
Help is plain text, never wrapped when the output is not a terminal (so it greps), with classic
metavars (``PATH``, ``INTEGER``); ``-h`` works like ``--help`` and ``--version`` everywhere.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from aftershock.cli.commands import COMMANDS, ROOT_HELP, help_width, root_help
from spine import __version__

if TYPE_CHECKING:
    from typer import _click as click


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
        if not isinstance(p, TyperOption) or p.is_flag or p.count:
            continue
        shown = str(p.display_type(ctx) or "")
        inner = shown.strip("<>").removesuffix(" range")
        inner = inner.removeprefix("list[").removesuffix("]")
        if shown.startswith("<") and inner in _METAVARS:
            p.metavar = _METAVARS[inner]
    for sub in getattr(cmd, "commands", {}).values():
        _plain_metavars(sub)


def _noop() -> None:
    """A callback, so that the wrapper in :func:`load` is a group."""


def load(name: str) -> click.Command:
    """Import command ``name`` and build its click command, as it would be if registered on
    the root directly (a Typer added under its name, or merged for ``pick``, or a function)."""
    spec = COMMANDS[name]
    target: Any = getattr(importlib.import_module(spec.module), spec.attr)
    wrapper = typer.Typer(rich_markup_mode=None, add_completion=False)
    wrapper.callback()(_noop)
    if isinstance(target, typer.Typer):
        target.rich_markup_mode = None
        if spec.pick is None:
            wrapper.add_typer(target, name=name)
        else:
            wrapper.add_typer(target)
    else:
        wrapper.command(name=name)(target)
    group: Any = typer.main.get_command(wrapper)
    cmd: click.Command = group.commands[spec.pick or name]
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

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(root_help(help_width()))

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
    help=ROOT_HELP,
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
    """The entry point (see :mod:`aftershock.cli.entry` for the quick answers)."""
    from aftershock.cli.entry import main as entry

    entry()


if __name__ == "__main__":
    main()
