"""``aftershock proxy``: run the fault proxy server from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path  # noqa: TC003 - typer reads annotations at run time
from typing import Annotated

import typer

from injector.proxy.errors import ApiError
from injector.proxy.server import ProxyServer

app = typer.Typer(help="The Toxiproxy-compatible fault proxy.", no_args_is_help=True)


class JsonLinesSink:
    """Appends each event as one JSON line to a file (``--events``)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def emit(self, event: object) -> None:
        from pydantic import BaseModel

        if isinstance(event, BaseModel):
            self._file.write(event.model_dump_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


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
            envvar="AFTERSHOCK_PROXY_TOKEN",
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
    events: Annotated[
        Path | None, typer.Option(help="Append fault events as JSON lines to this file.")
    ] = None,
    connection_events: Annotated[
        bool, typer.Option(help="Also record connection open/close events.")
    ] = False,
) -> None:
    """Serve the control API and the proxies it creates until interrupted."""
    populate = None
    if config is not None:
        try:
            populate = config.read_bytes()
        except OSError as exc:
            typer.echo(f"error: cannot read --config {config}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    sink = JsonLinesSink(events) if events is not None else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            server = ProxyServer(
                host=host,
                port=port,
                sink=sink,
                upstream_allowlist=allow_upstream,
                token=token,
                connection_events=connection_events,
            )
        except ValueError as exc:
            typer.echo(f"error: --allow-upstream: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            await server.start()
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
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
            if sink is not None:
                sink.close()

    _run(main)
