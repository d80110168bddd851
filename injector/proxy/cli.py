"""``aftershock proxy``: run the fault proxy server from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from pathlib import Path  # noqa: TC003 - typer reads annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from spine.eventlog import EventSink

from injector.proxy.errors import ApiError
from injector.proxy.server import ProxyServer
from spine.eventlog.publisher import LossReport, Publisher, lost_for_good
from spine.eventlog.sink import Fanout, JsonlSink
from spine.settings import Settings

TOKEN_ENV = "AFTERSHOCK_PROXY_TOKEN"
EXIT_LOG_LOST = 4
"""The event log lost events for good (``log.loss``): the broker lost events it had
acknowledged that the publisher's local log no longer held."""

app = typer.Typer(help="The Toxiproxy-compatible fault proxy.", no_args_is_help=True)


def _combine(sinks: list[EventSink]) -> EventSink | None:
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else Fanout(*sinks)


def _run(coro_factory: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro_factory())  # type: ignore[operator]
    else:
        uvloop.run(coro_factory())  # type: ignore[operator]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address the control API binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the control API.")] = 8474,
    config: Annotated[
        Path | None,
        typer.Option(help="A JSON array of proxies, created at start as /populate does."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            help="Require 'Authorization: Bearer TOKEN' on every API request.",
        ),
    ] = None,
    allow_upstream: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-upstream",
            help="CIDR or host name upstreams may use (repeatable; default: loopback only).",
        ),
    ] = None,
    allow_any_upstream: Annotated[
        bool,
        typer.Option(
            "--allow-any-upstream",
            help="Let proxies forward to any upstream (turns the upstream allowlist off).",
        ),
    ] = False,
    allow_listen: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-listen",
            help="CIDR proxies may also listen on (repeatable; default: loopback only; "
            "0.0.0.0/0 allows every interface).",
        ),
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="Append fault events as JSON lines to this file.")
    ] = None,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(
            envvar="AFTERSHOCK_KAFKA_BOOTSTRAP",
            help="Publish fault events to this Kafka cluster (host:port).",
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Topic for fault events [default: settings' events topic].")
    ] = None,
    connection_events: Annotated[
        bool, typer.Option(help="Also record connection open/close events.")
    ] = False,
) -> None:
    """Serve the control API and the proxies it creates until interrupted.

    Exit status: 0 stopped by SIGINT/SIGTERM, 1 cannot listen, 2 bad option or --config, 4
    the event log (--kafka-bootstrap) lost events for good."""
    if token is None:
        # Click reads an empty variable as unset; here a variable set empty is a mistake to
        # report, not a request to turn authentication off.
        token = os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        typer.echo(
            "error: the API token (--token or AFTERSHOCK_PROXY_TOKEN) is empty; "
            "give a token, or unset it to run without one",
            err=True,
        )
        raise typer.Exit(2)
    populate = None
    if config is not None:
        try:
            populate = config.read_bytes()
        except OSError as exc:
            typer.echo(f"error: cannot read --config {config}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    jsonl = JsonlSink(events) if events is not None else None
    lost: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with contextlib.AsyncExitStack() as resources:
            sinks: list[EventSink] = [jsonl] if jsonl is not None else []
            if kafka_bootstrap:
                settings = Settings()
                publisher = Publisher.configured(
                    kafka_bootstrap, settings, topic=topic, on_loss=_report_loss
                )
                resources.callback(lambda: lost.append(publisher.statistics().unrepaired))
                sinks.append(await resources.enter_async_context(publisher))
            await _serve(stop, _combine(sinks))

    async def _serve(stop: asyncio.Event, sink: EventSink | None) -> None:
        try:
            server = ProxyServer(
                host=host,
                port=port,
                sink=sink,
                upstream_allowlist=allow_upstream,
                token=token,
                connection_events=connection_events,
                allow_any_upstream=allow_any_upstream,
                listen_allowlist=allow_listen,
            )
        except ValueError as exc:
            typer.echo(f"error: --allow-upstream/--allow-listen: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            await server.start()
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
        # Long-lived objects (the server, its modules) never need collecting again, and a
        # rarer young-generation collection keeps the data path's pauses short.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            if populate is not None:
                try:
                    proxies = await server.populate(populate)
                except ApiError as exc:
                    typer.echo(f"error: --config {config}: {exc.message}", err=True)
                    raise typer.Exit(2) from None
                for proxy in proxies:
                    typer.echo(f"proxy {proxy.name}: {proxy.listen} -> {proxy.upstream}")
            typer.echo(f"fault proxy API on {server.api_url}")
            await stop.wait()
        finally:
            await server.aclose()

    try:
        _run(main)
    finally:
        if jsonl is not None:
            jsonl.close()
    if sum(lost):
        typer.secho(f"error: {lost_for_good(sum(lost))}", fg="red", err=True)
        raise typer.Exit(EXIT_LOG_LOST)


def _report_loss(report: LossReport) -> None:
    """The broker lost events it had acknowledged: say so as it happens."""
    typer.secho(report.describe(), fg="red" if report.unrepaired else "yellow", err=True)
