"""``aftershock stack up|down|status|drop-topics``: the embedded broker and Valkey."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from spine import stackstate
from spine.errors import StackError
from spine.settings import Settings
from spine.stack import EmbeddedStack

app = typer.Typer(
    name="stack",
    help="Run the embedded stack: a Tansu Kafka broker and a Valkey server on 127.0.0.1.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        help="Where pid records and logs live (default: AFTERSHOCK_STATE_DIR or .aftershock)."
    ),
]


def _settings(state_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if state_dir is not None:
        values["state_dir"] = state_dir
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"AFTERSHOCK_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def up(
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Start, print the addresses and leave it running."),
    ] = False,
    kafka_port: Annotated[
        int | None, typer.Option(help="Broker port (default: a free one).", min=0, max=65535)
    ] = None,
    redis_port: Annotated[
        int | None, typer.Option(help="Valkey port (default: a free one).", min=0, max=65535)
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="Partitions per topic (default: 4).", min=1)
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Start the stack and print its addresses; runs until Ctrl-C unless --detach."""
    settings = _settings(
        state_dir, kafka_port=kafka_port, redis_port=redis_port, partitions=partitions
    )
    try:
        asyncio.run(_up(settings, detach))
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


async def _up(settings: Settings, detach: bool) -> None:
    stack = EmbeddedStack(settings, detached=detach)
    await stack.start()
    for line in stack.cleaned_stale:
        typer.echo(f"stopped stale {line}")
    typer.echo(f"kafka  {stack.kafka_bootstrap}")
    typer.echo(f"redis  {stack.redis_url}")
    typer.echo(f"topics {', '.join(settings.topics)} ({settings.partitions} partitions)")
    typer.echo(f"healthy in {stack.started_in_s or 0:.2f} s")
    if detach:
        stack.detach()
        typer.echo("running detached; stop it with `aftershock stack down`")
        return
    typer.echo("press Ctrl-C to stop")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await stack.stop()
        typer.echo("stopped")


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop the detached stack and any processes left behind by crashed runs."""
    settings = _settings(state_dir)
    stopped = asyncio.run(_down(settings.state_dir))
    for line in stopped:
        typer.echo(f"stopped {line}")
    if not stopped:
        typer.echo("nothing to stop")


async def _down(state_dir: Path) -> list[str]:
    stopped: list[str] = []
    for path, record in stackstate.read_records(state_dir):
        if record is None or record.detached or stackstate.is_stale(record):
            if record is None:
                stackstate.remove(path)
                continue
            stopped += await stackstate.stop_record(state_dir, path, record)
    return stopped


@app.command()
def status(state_dir: StateDir = None) -> None:
    """List recorded stacks and whether each of their processes is running."""
    settings = _settings(state_dir)
    found = False
    for path, record in stackstate.read_records(settings.state_dir):
        found = True
        if record is None:
            typer.echo(f"{path}: unreadable record")
            continue
        if record.detached:
            kind = "detached"
        elif stackstate.owner_alive(record):
            kind = f"foreground (owner pid {record.owner_pid})"
        else:
            kind = f"stale (owner pid {record.owner_pid} is gone)"
        typer.echo(f"stack {kind}: kafka {record.kafka_bootstrap}  redis {record.redis_url}")
        for proc in record.processes:
            alive = stackstate.is_alive(proc.pid, proc.create_time)
            state = "running" if alive else "not running"
            typer.echo(f"  {proc.name:<6} pid {proc.pid:<8} port {proc.port:<6} {state}")
    if not found:
        typer.echo(f"no stack recorded in {settings.state_dir}")


@app.command("drop-topics")
def drop_topics(
    topics: Annotated[
        list[str] | None, typer.Argument(help="Topics to empty (default: all of Aftershock's).")
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap (default: the detached stack's, or the configured)."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Delete and recreate topics, freeing the broker's memory between experiments."""
    settings = _settings(state_dir)
    bootstrap = bootstrap or settings.kafka_bootstrap
    if bootstrap is None:
        for _, record in stackstate.read_records(settings.state_dir):
            if record is not None and record.detached:
                bootstrap = record.kafka_bootstrap
    if bootstrap is None:
        typer.echo("error: no broker: pass --bootstrap or run `aftershock stack up -d`", err=True)
        raise typer.Exit(2)
    target = EmbeddedStack(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
    try:
        asyncio.run(target.drop_topics(topics or None))
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"emptied {', '.join(topics or settings.topics)} on {bootstrap}")
