"""Root of the ``aftershock`` command: each part of the system contributes one command group."""

from __future__ import annotations

import typer

from aftershock import __version__
from aftershock.cli import demo, gameday, stack
from injector.proxy.cli import app as proxy_app

app = typer.Typer(
    name="aftershock",
    help="Event-sourced chaos and fault injection: load, faults and resilience analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app)
app.command(name="demo")(demo.demo)
app.add_typer(proxy_app, name="proxy")
app.command(name="report")(gameday.report)
app.command(name="traces")(gameday.traces)
app.command(name="run")(gameday.run)


@app.callback()
def _root() -> None:
    """Event-sourced chaos and fault injection: load, faults and resilience analysis."""


@app.command()
def version() -> None:
    """Print the Aftershock version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
