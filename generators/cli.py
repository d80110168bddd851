"""``aftershock generate``: run the load profiles of a file, alone or as a distributed fleet.

Single process: ``aftershock generate run.yaml``. Several local processes coordinated through
Redis: ``aftershock generate run.yaml --processes 3``. More hosts: start the coordinator with
``--expect N`` (total generators) and run ``aftershock generate --join EXPERIMENT_ID`` elsewhere
with the same ``AFTERSHOCK_REDIS_URL``/``AFTERSHOCK_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import signal as signals
import sys
import time
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from generators.distributed import Coordination, Plan, Signal, wall_to_monotonic
from generators.errors import GeneratorError
from generators.profile_file import RunFile, load_run_file
from generators.runner import Generator, GeneratorOptions, default_generator_id
from generators.sinks import CountingSink
from generators.stability import search_stability
from schemas.base import new_run_id
from spine.activefaults import ActiveFaults, follow
from spine.eventlog.sink import JsonlSink
from spine.settings import Settings
from spine.telemetry import configure_tracing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from generators.stats import GeneratorStats
    from spine.eventlog.sink import EventSink

EventsMode = Literal["kafka", "jsonl", "none"]


def _echo(quiet: bool, text: str) -> None:
    if not quiet:
        typer.echo(text)


@contextlib.asynccontextmanager
async def _services(
    settings: Settings, need_kafka: bool, need_redis: bool
) -> AsyncIterator[tuple[str | None, str | None]]:
    """Configured Kafka/Redis addresses, or an embedded stack started for this run."""
    kafka, redis_url = settings.kafka_bootstrap, settings.redis_url
    if (need_kafka and kafka is None) or (need_redis and redis_url is None):
        from spine.stack import EmbeddedStack

        async with EmbeddedStack(settings) as stack:
            yield (kafka or stack.kafka_bootstrap, redis_url or stack.redis_url)
    else:
        yield kafka, redis_url


# Two events per round trip: with the publisher's 5 ms default, a generator at 5k msgs/s sent
# ~200 produce requests a second and aiokafka's per-request work was a sizeable share of the
# per-message CPU. Events only feed analysis, which reads them seconds later anyway.
PUBLISH_LINGER_MS = 50.0


@contextlib.asynccontextmanager
async def _sink(
    mode: EventsMode,
    settings: Settings,
    kafka: str | None,
    events_file: Path,
    options: GeneratorOptions,
) -> AsyncIterator[tuple[EventSink, Callable[[], str]]]:
    if mode == "kafka":
        from spine.eventlog.publisher import Publisher, lost_for_good

        assert kafka is not None
        async with Publisher.configured(kafka, settings, linger_ms=PUBLISH_LINGER_MS) as pub:
            pub.attribute_to(options.experiment_id, options.run_id)

            def describe() -> str:
                s = pub.statistics()
                return f"kafka: emitted={s.emitted} sent={s.sent} in_spool={s.in_spool}"

            try:
                yield pub, describe
            finally:
                with contextlib.suppress(TimeoutError):
                    await pub.flush(timeout_s=30)
        lost = pub.statistics().unrepaired
        if lost:  # the publisher logged it; the command must not succeed
            raise GeneratorError(lost_for_good(lost))
        return
    if mode == "jsonl":
        jsonl = JsonlSink(events_file, batch=2000)
        try:
            yield jsonl, lambda: f"events: {jsonl.emitted} in {jsonl.path}"
        finally:
            jsonl.close()
        return
    counting = CountingSink()
    yield counting, lambda: f"events: {counting.emitted} (not recorded)"


async def _run_profiles(
    run: RunFile,
    sink: EventSink,
    options: GeneratorOptions,
    *,
    start_at: float | None,
    summary_every_s: float,
    quiet: bool,
    describe: Callable[[], str],
    on_tick: Callable[[Callable[[], list[GeneratorStats]]], Any] | None = None,
    stop_signal: asyncio.Future[Signal] | None = None,
    faults: ActiveFaults | None = None,
) -> list[GeneratorStats]:
    """Run every load profile of the file at once; print a live summary."""
    gens = [Generator(p, run.target(p.target), sink, options, faults=faults) for p in run.load]

    def snapshot() -> list[GeneratorStats]:
        return [g.statistics() for g in gens]

    def stop_all() -> None:
        for g in gens:
            g.stop()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signals.SIGINT, stop_all)
        loop.add_signal_handler(signals.SIGTERM, stop_all)

    async def summarise() -> None:
        frozen = False
        while True:
            await asyncio.sleep(summary_every_s)
            if not frozen and all(g.counters.connects >= len(g.plans) for g in gens):
                # What was allocated while connecting lives until the end: moving it out of
                # the collector's reach keeps full collections (the p99 outliers) short. No
                # gc.collect() first: at 10k sessions it held the loop ~380 ms (every send and
                # echo waiting) and found nothing unreachable.
                gc.freeze()
                frozen = True
            if not quiet:
                for g, s in zip(gens, snapshot(), strict=True):
                    _echo(quiet, f"[{g.target.name}] {s.line()}")
                _echo(quiet, describe())
            if on_tick is not None:
                await on_tick(snapshot)

    async def watch_stop() -> None:
        assert stop_signal is not None
        sig = await stop_signal
        for g in gens:
            g.stop(drain=sig != "abort")

    async with asyncio.TaskGroup() as tg:
        runs = [tg.create_task(g.run(start_at)) for g in gens]
        helpers = [tg.create_task(summarise())]
        if stop_signal is not None:
            helpers.append(tg.create_task(watch_stop()))
        try:
            await asyncio.gather(*runs)
        finally:
            for h in helpers:
                h.cancel()
    return [r.result() for r in runs]


def _options(
    experiment_id: str,
    engine: str | None,
    trace_every: int,
    max_connecting: int,
    tick_ms: float,
    **kw: Any,
) -> GeneratorOptions:
    return GeneratorOptions(
        experiment_id=experiment_id,
        engine=engine,
        trace_every=trace_every,
        max_connecting=max_connecting,
        tick_s=tick_ms / 1000,
        **kw,
    )


@contextlib.asynccontextmanager
async def _following_faults(
    redis_url: str | None, experiment_id: str
) -> AsyncIterator[ActiveFaults | None]:
    """The faults the experiment's injector announces in Redis, kept up to date while in use
    (see :mod:`spine.activefaults`); None without Redis."""
    if redis_url is None:
        yield None
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    faults = ActiveFaults()
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(follow(client, experiment_id, faults))
            try:
                yield faults
            finally:
                task.cancel()
    finally:
        await client.aclose()


async def _local(
    run: RunFile,
    settings: Settings,
    mode: EventsMode,
    events_file: Path,
    options: GeneratorOptions,
    summary_every_s: float,
    quiet: bool,
) -> int:
    async with (
        _services(settings, need_kafka=mode == "kafka", need_redis=False) as (kafka, _),
        _sink(mode, settings, kafka, events_file, options) as (sink, describe),
    ):
        if any(p.stability is not None for p in run.load):
            for prof in run.load:
                if prof.stability is None:
                    continue
                report = await search_stability(
                    prof,
                    run.target(prof.target),
                    sink,
                    options,
                    on_level=lambda r: _echo(quiet, f"level {r.sessions}: {r.reason}"),
                )
                for line in report.lines():
                    typer.echo(f"[{prof.target}] {line}")
            return 0
        async with _following_faults(settings.redis_url, options.experiment_id) as faults:
            results = await _run_profiles(
                run,
                sink,
                options,
                start_at=None,
                summary_every_s=summary_every_s,
                quiet=quiet,
                describe=describe,
                faults=faults,
            )
    for prof, stats in zip(run.load, results, strict=True):
        typer.echo(f"[{prof.target}] final: {stats.line()}")
    typer.echo(describe())
    return 0


async def _coordinate(
    run: RunFile,
    settings: Settings,
    mode: EventsMode,
    experiment_id: str,
    processes: int,
    expect: int,
    member_args: list[str],
    summary_every_s: float,
    quiet: bool,
) -> int:
    async with _services(settings, need_kafka=mode == "kafka", need_redis=True) as (kafka, redis):
        assert redis is not None
        async with Coordination(redis, experiment_id) as coord:
            plan = Plan(
                run_file=run.model_dump(mode="json"),
                members=expect,
                options={"events": mode, "kafka_bootstrap": kafka},
            )
            await coord.publish_plan(plan)
            env = dict(os.environ, AFTERSHOCK_REDIS_URL=redis)
            if kafka:
                env["AFTERSHOCK_KAFKA_BOOTSTRAP"] = kafka
            argv = [
                sys.executable,
                "-m",
                "aftershock.cli.main",
                "generate",
                "--join",
                experiment_id,
                *member_args,
            ]
            children = [
                await asyncio.create_subprocess_exec(*argv, env=env) for _ in range(processes)
            ]
            _echo(
                quiet,
                f"experiment {experiment_id}: {processes} local generator(s), "
                f"{expect} expected in total",
            )
            try:
                while True:
                    await asyncio.sleep(summary_every_s)
                    done = await coord.finished()
                    beats = await coord.heartbeats()
                    for name, s in sorted(beats.items()):
                        if name not in done:
                            _echo(quiet, f"[{name}] {s.line()}")
                    if len(done) >= expect:
                        break
                    if all(c.returncode is not None for c in children) and len(done) < processes:
                        typer.echo("generator processes exited before finishing", err=True)
                        return 1
            except (KeyboardInterrupt, asyncio.CancelledError):
                await coord.send_signal("abort")
                raise
            finally:
                for c in children:
                    try:
                        async with asyncio.timeout(30):
                            await c.wait()
                    except TimeoutError:
                        c.terminate()
                        await c.wait()
            total_sends = sum(s.sends for s in done.values())
            total_recv = sum(s.receives for s in done.values())
            for name, s in sorted(done.items()):
                typer.echo(f"[{name}] final: {s.line()}")
            typer.echo(
                f"all {len(done)} generators done: sends={total_sends} receives={total_recv}"
            )
    return 0


async def _member(
    experiment_id: str,
    settings: Settings,
    events_file: Path,
    engine: str | None,
    trace_every: int,
    max_connecting: int,
    tick_ms: float,
    summary_every_s: float,
    quiet: bool,
) -> int:
    if settings.redis_url is None:
        raise GeneratorError("--join needs AFTERSHOCK_REDIS_URL (or --redis-url)")
    generator_id = default_generator_id()
    async with Coordination(settings.redis_url, experiment_id) as coord:
        plan = await coord.wait_plan(timeout_s=30)
        run = RunFile.model_validate(plan.run_file)
        member = await coord.join(generator_id, plan)
        mode: EventsMode = plan.options.get("events", "none")
        kafka = settings.kafka_bootstrap or plan.options.get("kafka_bootstrap")
        options = _options(
            experiment_id,
            engine,
            trace_every,
            max_connecting,
            tick_ms,
            generator_id=generator_id,
            member=member,
            members=plan.members,
        )
        stop: asyncio.Future[Signal] = asyncio.get_running_loop().create_future()
        # members of one run must not share a file
        own_file = events_file.with_name(f"{events_file.stem}-{generator_id}{events_file.suffix}")
        async with _sink(mode, settings, kafka, own_file, options) as (sink, describe):
            start_ns = await coord.ready_and_wait_start(generator_id, plan.members, 120)

            async def beat(snapshot: Callable[[], list[GeneratorStats]]) -> None:
                stats = snapshot()
                await coord.heartbeat(generator_id, _merge(stats))
                sig = await coord.signal()
                if sig is not None and not stop.done():
                    stop.set_result(sig)

            async with _following_faults(settings.redis_url, experiment_id) as faults:
                results = await _run_profiles(
                    run,
                    sink,
                    options,
                    start_at=wall_to_monotonic(start_ns),
                    summary_every_s=summary_every_s,
                    quiet=quiet,
                    describe=describe,
                    on_tick=beat,
                    stop_signal=stop,
                    faults=faults,
                )
        await coord.done(generator_id, _merge(results))
    return 0


def _merge(stats: list[GeneratorStats]) -> GeneratorStats:
    first = stats[0]
    if len(stats) == 1:
        return first
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(first):
        values = [getattr(s, f.name) for s in stats]
        if f.name in ("p50_ms", "p99_ms", "max_ms", "elapsed_s", "max_late_ms"):
            present = [v for v in values if v is not None]
            fields[f.name] = max(present) if present else None
        else:
            fields[f.name] = sum(values)
    return type(first)(**fields)


def generate(
    profile_file: Annotated[
        Path | None, typer.Argument(help="YAML/JSON file with `targets` and `load`.")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="ws (reference), picows, http or tcp; default per target.")
    ] = None,
    experiment_id: Annotated[
        str | None, typer.Option(help="Experiment id for events and coordination.")
    ] = None,
    events: Annotated[
        str,
        typer.Option(
            help="Where events go: kafka (embedded broker unless configured), "
            "jsonl (--events-file) or none."
        ),
    ] = "kafka",
    events_file: Annotated[Path | None, typer.Option(help="JSONL file for --events jsonl.")] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Generator processes to start here, coordinated via Redis.")
    ] = 1,
    expect: Annotated[
        int | None, typer.Option(min=1, help="Total generators incl. other hosts' --join.")
    ] = None,
    join: Annotated[
        str | None, typer.Option(metavar="EXPERIMENT_ID", help="Join a distributed run.")
    ] = None,
    signal: Annotated[
        str | None, typer.Option(help="Send stop or abort to a distributed run and exit.")
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Overrides AFTERSHOCK_REDIS_URL.")] = None,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Overrides AFTERSHOCK_KAFKA_BOOTSTRAP.")
    ] = None,
    trace_every: Annotated[
        int, typer.Option(min=0, help="Trace every n-th round trip (0: none).")
    ] = 100,
    max_connecting: Annotated[
        int, typer.Option(min=1, help="Connection attempts in flight at once.")
    ] = 500,
    tick_ms: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=1000,
            help="The send tick: a send leaves at the first tick at or after it is due.",
        ),
    ] = 5.0,
    summary_every_s: Annotated[float, typer.Option(help="Live summary interval.")] = 2.0,
    quiet: Annotated[bool, typer.Option(help="Only the final summary.")] = False,
) -> None:
    """Run load profiles against their targets, recording every session event."""
    over: dict[str, Any] = {}
    if redis_url:
        over["redis_url"] = redis_url
    if kafka_bootstrap:
        over["kafka_bootstrap"] = kafka_bootstrap
    settings = Settings(**over)
    if events not in ("kafka", "jsonl", "none"):
        raise typer.BadParameter("must be kafka, jsonl or none", param_hint="--events")
    mode: EventsMode = events  # type: ignore[assignment]
    exp = join or experiment_id or f"gen-{new_run_id()}"
    events_path = events_file or settings.state_dir / "runs" / exp / "events.jsonl"
    run_dir = settings.state_dir / "runs" / exp
    _, shutdown_tracing = configure_tracing(settings, "aftershock-generator", run_dir=run_dir)
    try:
        code = _run(
            _main(
                profile_file,
                settings,
                mode,
                events_path,
                exp,
                engine,
                processes,
                expect,
                join,
                signal,
                trace_every,
                max_connecting,
                tick_ms,
                summary_every_s,
                quiet,
            )
        )
    except GeneratorError as exc:
        typer.echo(f"error: {exc}", err=True)
        code = 2
    finally:
        shutdown_tracing()
    raise typer.Exit(code)


async def _main(
    profile_file: Path | None,
    settings: Settings,
    mode: EventsMode,
    events_path: Path,
    exp: str,
    engine: str | None,
    processes: int,
    expect: int | None,
    join: str | None,
    signal: str | None,
    trace_every: int,
    max_connecting: int,
    tick_ms: float,
    summary_every_s: float,
    quiet: bool,
) -> int:
    if signal is not None:
        if signal not in ("stop", "abort"):
            raise typer.BadParameter("must be stop or abort", param_hint="--signal")
        if settings.redis_url is None:
            raise GeneratorError("--signal needs AFTERSHOCK_REDIS_URL (or --redis-url)")
        async with Coordination(settings.redis_url, exp) as coord:
            await coord.send_signal("stop" if signal == "stop" else "abort")
        return 0
    if join is not None:
        return await _member(
            join,
            settings,
            events_path,
            engine,
            trace_every,
            max_connecting,
            tick_ms,
            summary_every_s,
            quiet,
        )
    if profile_file is None:
        raise typer.BadParameter("give a load profile file (or --join)", param_hint="PROFILE_FILE")
    run = load_run_file(profile_file)
    total = expect or processes
    if total > 1:
        args = [
            "--trace-every",
            str(trace_every),
            "--max-connecting",
            str(max_connecting),
            "--tick-ms",
            str(tick_ms),
            "--summary-every-s",
            str(summary_every_s),
        ]
        if engine:
            args += ["--engine", engine]
        args.append("--quiet")  # the coordinator prints everyone's heartbeats
        return await _coordinate(
            run, settings, mode, exp, processes, total, args, summary_every_s, quiet
        )
    options = _options(exp, engine, trace_every, max_connecting, tick_ms)
    _echo(quiet, f"experiment {exp}: {sum(p.total_sessions for p in run.load)} sessions")
    started = time.monotonic()
    code = await _local(run, settings, mode, events_path, options, summary_every_s, quiet)
    _echo(quiet, f"done in {time.monotonic() - started:.1f} s")
    return code


def _run(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return int(asyncio.run(coro))
    return int(uvloop.run(coro))
