"""Root of the ``aftershock`` command: each part of the system contributes one command group."""

from __future__ import annotations

import typer

from aftershock.cli import demo, gameday, stack
from analyzers.cli import app as analyzers_app
from generators.cli import generate
from injector.cli import control_app, injector_app, validate
from injector.proxy.cli import app as proxy_app
from spine import __version__

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
app.command(name="dashboard")(gameday.dashboard)
app.command("validate")(validate)
app.add_typer(injector_app, name="injector")
app.add_typer(control_app, name="control")
app.add_typer(analyzers_app)
app.command("generate")(generate)


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
