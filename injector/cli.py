"""``aftershock validate``, ``aftershock injector run|reap`` and ``aftershock control ...``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from injector.control import send_command
from injector.controller import ToxiproxyController
from injector.errors import InjectorError
from injector.executor import Executor, RunOptions, experiment_id_of
from injector.reap import (
    leftovers_from_events,
    leftovers_from_journal,
    leftovers_from_kafka,
    reap,
)
from injector.validate import check_file
from spine.eventlog.sink import Fanout, JsonlSink
from spine.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from injector.control import Command
    from injector.journal import Journal
    from spine.eventlog import EventSink
    from spine.eventlog.publisher import LossReport

injector_app = typer.Typer(
    help="Run experiment timelines against the fault proxy; clean up after dead runs.",
    no_args_is_help=True,
)
control_app = typer.Typer(
    help="Game-day controls for a running experiment (through Redis).", no_args_is_help=True
)

EXIT = {"completed": 0, "failed": 1, "aborted": 3}
"""Exit status per journal status; ``interrupted`` exits 130 (SIGINT) or 143 (SIGTERM)."""
EXIT_LOG_LOST = 4
"""A run that would have exited 0, but whose event log lost events for good (``log.loss``)."""


def validate(
    file: Annotated[Path, typer.Argument(help="Experiment file (.yaml, .yml or .json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print problems as a JSON array instead of text.")
    ] = False,
) -> None:
    """Check an experiment file; print every problem with its path and line. Exit 1 on any."""
    exp, problems = check_file(file)
    problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.path))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"path": p.path, "line": p.line, "column": p.column, "message": p.message}
                    for p in problems
                ],
                indent=2,
            )
        )
    else:
        for p in problems:
            typer.echo(p.render(str(file)), err=True)
    if problems or exp is None:
        if not as_json:
            typer.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(1)
    ax = exp.aftershock
    if not as_json:
        typer.echo(
            f"{file}: ok — {exp.title!r}: {len(ax.targets)} target(s), {len(ax.faults)} "
            f"fault(s) over {ax.planned_duration_s:g}s, {len(exp.method)} method activity(ies), "
            f"{len(ax.safeguards)} safeguard(s)"
        )


@contextlib.asynccontextmanager
async def _fault_proxy(url: str | None, sink: EventSink) -> AsyncIterator[str]:
    """The given Toxiproxy API URL, or an embedded fault proxy for the run's duration."""
    if url:
        yield url
        return
    try:
        proxy_mod = importlib.import_module("injector.proxy")
    except ImportError as exc:
        raise InjectorError(
            "no --toxiproxy-url given and the embedded fault proxy is not available"
        ) from exc
    async with proxy_mod.ProxyServer(host="127.0.0.1", port=0, sink=sink) as server:
        yield str(server.api_url)


async def _run(
    file: Path,
    *,
    toxiproxy_url: str | None,
    redis_url: str | None,
    journal: Path,
    events: Path | None,
    experiment_id: str | None,
    leases: bool | None,
    standard: bool,
    skip_hypothesis: bool,
    time_scale: float,
    kafka_bootstrap: str | None,
    settings: Settings,
) -> tuple[Journal | None, int]:
    from injector.validate import load_experiment

    exp = load_experiment(file)
    eid = experiment_id or experiment_id_of(exp)
    toxiproxy_url = toxiproxy_url or _url_from_configuration(exp.configuration)
    file_sink = JsonlSink(events) if events else None
    sinks: list[EventSink] = [file_sink] if file_sink else []
    resources = contextlib.AsyncExitStack()
    publisher = None
    if kafka_bootstrap:
        from spine.eventlog.publisher import Publisher

        publisher = await resources.enter_async_context(
            Publisher.configured(kafka_bootstrap, settings, on_loss=_report_loss)
        )
        sinks.append(publisher)
    sink: EventSink = Fanout(*sinks)
    redis = None
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(redis_url)
    task = asyncio.current_task()
    assert task is not None
    got: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        got.setdefault("signal", signum)
        task.cancel()

    async def execute() -> tuple[Journal | None, int]:
        async with _fault_proxy(toxiproxy_url, sink) as url:
            ctl = ToxiproxyController(url, assume_standard=standard)
            executor = Executor(
                exp,
                ctl,
                sink,
                RunOptions(
                    journal_path=journal,
                    experiment_id=eid,
                    redis=redis,
                    use_leases=leases,
                    skip_hypothesis=skip_hypothesis,
                    time_scale=time_scale,
                ),
            )
            if publisher is not None:
                publisher.attribute_to(eid, executor.run_id)
            typer.echo(
                f"experiment {eid} run {executor.run_id}: {len(exp.aftershock.faults)} fault(s) "
                f"against {url}; journal {journal}",
                err=True,
            )
            try:
                result = await executor.run()
            except asyncio.CancelledError:
                return executor.journal(), 128 + got.get("signal", signal.SIGINT)
            if executor.unsupported is not None:
                return result, 2
            return result, EXIT.get(result.status, 1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        result, code = await execute()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if redis is not None:
            await redis.aclose()
        await resources.aclose()  # flushes the publisher
        if publisher is not None:
            st = publisher.statistics()
            typer.echo(
                f"kafka {settings.topic_events}: emitted={st.emitted} sent={st.sent} "
                f"in_spool={st.in_spool}",
                err=True,
            )
        if file_sink is not None:
            file_sink.close()
    lost = publisher.statistics().unrepaired if publisher is not None else 0
    if lost:
        from spine.eventlog.publisher import lost_for_good

        typer.secho(f"error: {lost_for_good(lost)}", fg="red", err=True)
        code = code or EXIT_LOG_LOST
    return result, code


def _report_loss(report: LossReport) -> None:
    """The broker lost events it had acknowledged: say so as it happens."""
    typer.secho(report.describe(), fg="red" if report.unrepaired else "yellow", err=True)


def _url_from_configuration(config: dict[str, Any]) -> str | None:
    """Where a Chaos Toolkit file says its Toxiproxy is (``toxiproxy_url``, or
    ``toxiproxy_host`` + ``toxiproxy_port``), as chaostoxi reads it."""
    from injector.activities import resolve_configuration

    resolved = resolve_configuration(config)
    if resolved.get("toxiproxy_url"):
        return str(resolved["toxiproxy_url"])
    if resolved.get("toxiproxy_host"):
        return f"http://{resolved['toxiproxy_host']}:{resolved.get('toxiproxy_port') or 8474}"
    return None


def _tracing(settings: Settings, journal: Path) -> Callable[[], None]:
    """Export the injector's spans (the experiment and one per fault, which the sessions'
    spans link to) as every entry point does: ``spans.jsonl`` beside the journal, and OTLP when
    configured (:func:`spine.telemetry.configure_tracing`). With tracing off, spans still get
    real ids, so events carry trace context. Returns the flush-and-shutdown function."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from spine.telemetry import configure_tracing

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return lambda: None  # already set up by whoever runs this in process
    provider, shutdown = configure_tracing(
        settings, "aftershock-injector", run_dir=journal.resolve().parent
    )
    if provider is None:
        trace.set_tracer_provider(TracerProvider())
    return shutdown


def _settings() -> Settings:
    return Settings()


@injector_app.command("run")
def run_cmd(
    file: Annotated[Path, typer.Argument(help="Experiment file (.yaml, .yml or .json).")],
    toxiproxy_url: Annotated[
        str | None,
        typer.Option(help="Toxiproxy API, e.g. http://127.0.0.1:8474; unset: embedded proxy."),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis for game-day controls and safeguard results.")
    ] = None,
    journal: Annotated[Path, typer.Option(help="Where to write the journal.")] = Path(
        "journal.json"
    ),
    events: Annotated[
        Path | None, typer.Option(help="Also append every event as a JSON line here.")
    ] = None,
    experiment_id: Annotated[
        str | None, typer.Option(help="Override the experiment id (default: from the file).")
    ] = None,
    leases: Annotated[
        bool | None,
        typer.Option(
            "--leases/--no-leases",
            help="Require leases / never use them (default: use them if the server has them).",
        ),
    ] = None,
    standard: Annotated[
        bool, typer.Option(help="Treat the server as a stock Toxiproxy (no extensions).")
    ] = False,
    skip_hypothesis: Annotated[
        bool, typer.Option(help="Do not evaluate the steady-state hypothesis.")
    ] = False,
    time_scale: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Scale every offset, duration and pause (0.1 = rehearse 10x faster).",
        ),
    ] = 1.0,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Publish every event to the events topic of this Kafka "
            "(default: AFTERSHOCK_KAFKA_BOOTSTRAP; unset: no Kafka)."
        ),
    ] = None,
) -> None:
    """Run an experiment: hypothesis, method and fault timeline, rollbacks; write the journal.

    Exit status: 0 completed, 1 failed or deviated, 2 invalid file, 3 aborted, 4 completed but
    the event log lost events for good, 130/143 interrupted by SIGINT/SIGTERM (every fault
    reverted before exiting)."""
    settings = _settings()
    shutdown_tracing = _tracing(settings, journal)
    try:
        journal_obj, code = asyncio.run(
            _run(
                file,
                toxiproxy_url=toxiproxy_url or settings.toxiproxy_url,
                redis_url=redis_url or settings.redis_url,
                journal=journal,
                events=events,
                experiment_id=experiment_id,
                leases=leases,
                standard=standard,
                skip_hypothesis=skip_hypothesis,
                time_scale=time_scale,
                kafka_bootstrap=kafka_bootstrap or settings.kafka_bootstrap,
                settings=settings,
            )
        )
    except InjectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        shutdown_tracing()
    if journal_obj is not None:
        ax = journal_obj.aftershock
        t = ax.timings
        jitter = t.inject_jitter_ms if t else None
        typer.echo(
            f"status {journal_obj.status}"
            + (" (deviated)" if journal_obj.deviated else "")
            + (
                f"; inject jitter ms max {jitter.max} mean {jitter.mean}"
                if jitter and jitter.count
                else ""
            )
            + (
                f"; aborted: {journal_obj.aftershock.abort_reason}"
                if journal_obj.aftershock.abort_reason
                else ""
            )
            + (f"; error: {journal_obj.aftershock.error}" if journal_obj.aftershock.error else ""),
            err=True,
        )
    raise typer.Exit(code)


@injector_app.command("reap")
def reap_cmd(
    journal: Annotated[
        Path | None, typer.Option(help="Journal of the run to clean up after.")
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="JSON-lines event log of the run (with --experiment-id).")
    ] = None,
    experiment_id: Annotated[
        str | None, typer.Option(help="Experiment whose events to fold (default: journal's).")
    ] = None,
    toxiproxy_url: Annotated[
        str | None, typer.Option(help="Toxiproxy API (default: the journal's, or settings).")
    ] = None,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Also fold the event log on Kafka (AFTERSHOCK_KAFKA_BOOTSTRAP, events topic).",
        ),
    ] = False,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Kafka for --kafka (default: AFTERSHOCK_KAFKA_BOOTSTRAP).")
    ] = None,
) -> None:
    """Remove every toxic and outage a run created and did not revert (after kill -9)."""
    if journal is None and events is None and not kafka:
        typer.echo("error: give --journal, --events and/or --kafka", err=True)
        raise typer.Exit(2)
    settings = _settings()
    leftovers = []
    url = toxiproxy_url
    try:
        eid = experiment_id
        if journal is not None:
            from injector.journal import read_journal

            jeid, found = leftovers_from_journal(journal)
            eid = eid or jeid
            leftovers.extend(found)
            with contextlib.suppress(Exception):
                url = url or read_journal(journal).aftershock.api_url
        if (events is not None or kafka) and eid is None:
            typer.echo("error: --events/--kafka need --experiment-id (or a --journal)", err=True)
            raise typer.Exit(2)
        if events is not None and eid is not None:
            leftovers.extend(lo for lo in leftovers_from_events(events, eid) if lo not in leftovers)
        if kafka and eid is not None:
            bootstrap = kafka_bootstrap or settings.kafka_bootstrap
            if not bootstrap:
                typer.echo("error: --kafka needs --kafka-bootstrap or AFTERSHOCK_KAFKA_BOOTSTRAP")
                raise typer.Exit(2)
            found = asyncio.run(leftovers_from_kafka(bootstrap, settings.topic_events, eid))
            leftovers.extend(lo for lo in found if lo not in leftovers)
        url = url or settings.toxiproxy_url
        if not url:
            typer.echo("error: no --toxiproxy-url and none in the journal", err=True)
            raise typer.Exit(2)
        results = asyncio.run(reap(ToxiproxyController(url), leftovers))
    except InjectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for r in results:
        lo = r.leftover
        what = f"toxic {lo.name}" if lo.kind == "toxic" else f"outage {lo.name}"
        typer.echo(f"{lo.proxy}: {what}: {r.outcome}{' — ' + r.detail if r.detail else ''}")
    if not results:
        typer.echo("nothing to reap")
    if any(r.outcome == "failed" for r in results):
        raise typer.Exit(1)


def _control(command: Command, experiment_id: str, redis_url: str | None) -> None:
    url = redis_url or _settings().redis_url
    if not url:
        typer.echo("error: no --redis-url (or AFTERSHOCK_REDIS_URL)", err=True)
        raise typer.Exit(2)

    async def go() -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        try:
            return await send_command(client, experiment_id, command)
        finally:
            await client.aclose()

    try:
        state = asyncio.run(go())
    except InjectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if state is None:
        typer.echo(
            f"sent {command} to {experiment_id}, but no running injector is publishing its "
            "state: the command waits until a run of this experiment starts listening "
            "(and is dropped if a new run starts)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"sent {command} to {experiment_id} (run {state.run_id}, {state.status})")


_EID = Annotated[str, typer.Argument(help="The running experiment's id.")]
_REDIS = Annotated[str | None, typer.Option(help="Redis URL (default: AFTERSHOCK_REDIS_URL).")]


@control_app.command()
def pause(experiment_id: _EID, redis_url: _REDIS = None) -> None:
    """Freeze the timeline: no fault starts or ends until resumed."""
    _control("pause", experiment_id, redis_url)


@control_app.command()
def resume(experiment_id: _EID, redis_url: _REDIS = None) -> None:
    """Continue a paused timeline where it stopped."""
    _control("resume", experiment_id, redis_url)


@control_app.command()
def abort(experiment_id: _EID, redis_url: _REDIS = None) -> None:
    """Stop the run now: every fault is reverted, the journal says aborted."""
    _control("abort", experiment_id, redis_url)


@control_app.command()
def skip(experiment_id: _EID, redis_url: _REDIS = None) -> None:
    """Revert the active faults now and jump to the next scheduled fault."""
    _control("skip", experiment_id, redis_url)


if __name__ == "__main__":
    # `python -m injector.cli run|reap ...`: the same commands without loading every other
    # command group of `aftershock` (quicker to start).
    injector_app()
