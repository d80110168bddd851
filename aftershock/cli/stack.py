"""``aftershock stack up|down|restart|status|drop-topics``: the embedded broker and Valkey."""

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
from spine.stack import SERVICES, EmbeddedStack, detached_record, restart_detached

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
    if detach and _detached_running(settings):
        # Already up: start again only what is gone (e.g. a killed broker), keep the rest.
        restarted = await restart_detached(settings, only_dead=True)
        found = detached_record(settings.state_dir)
        assert found is not None
        rec = found[1]
        for line in restarted:
            typer.echo(f"restarted {line}")
        if not restarted:
            typer.echo("a detached stack is already running")
        typer.echo(f"kafka  {rec.kafka_bootstrap}")
        typer.echo(f"redis  {rec.redis_url}")
        return
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


def _detached_running(settings: Settings) -> bool:
    found = detached_record(settings.state_dir)
    return found is not None and not stackstate.is_stale(found[1])


@app.command()
def down(
    keep_producers: Annotated[
        bool,
        typer.Option(
            "--keep-producers",
            help="Leave running the commands publishing to this stack (they keep their events "
            "on disk and send them to the next broker) instead of stopping them first.",
        ),
    ] = False,
    producer_timeout_s: Annotated[
        float, typer.Option(help="How long producers may take to flush and stop.", min=0)
    ] = 30.0,
    state_dir: StateDir = None,
) -> None:
    """Stop the detached stack and any processes left behind by crashed runs.

    The commands publishing to the stack (found by their local logs in the state directory)
    are stopped first (SIGTERM: they flush and exit), so the broker does not stop under them.
    """
    settings = _settings(state_dir)
    stopped = asyncio.run(_down(settings.state_dir, keep_producers, producer_timeout_s))
    for line in stopped:
        typer.echo(f"stopped {line}")
    if not stopped:
        typer.echo("nothing to stop")


async def _down(state_dir: Path, keep_producers: bool, producer_timeout_s: float) -> list[str]:
    stopped: list[str] = []
    for path, record in stackstate.read_records(state_dir):
        if record is None or record.detached or stackstate.is_stale(record):
            if record is None:
                stackstate.remove(path)
                continue
            if not keep_producers and record.kafka_bootstrap is not None:
                stopped += await stackstate.stop_publishers(
                    state_dir, record.kafka_bootstrap, producer_timeout_s
                )
            stopped += await stackstate.stop_record(state_dir, path, record)
    return stopped


@app.command()
def restart(
    services: Annotated[
        list[str] | None,
        typer.Argument(help="What to restart: broker, valkey (default: both).", show_default=False),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Restart parts of the detached stack on the same ports (a new broker gets its topics).

    The embedded broker keeps records in memory: publishers notice the new broker and send
    again what their local logs hold.
    """
    settings = _settings(state_dir)
    names = []
    for service in services or list(SERVICES):
        if service not in SERVICES:
            typer.echo(
                f"error: unknown service {service!r}; choose from {', '.join(SERVICES)}", err=True
            )
            raise typer.Exit(2)
        names.append(SERVICES[service])
    try:
        restarted = asyncio.run(restart_detached(settings, names))
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in restarted:
        typer.echo(f"restarted {line}")


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
