"""``aftershock report`` and ``aftershock traces``: a run directory's report and traces."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aftershock.report.errors import GamedayError
from spine.settings import Settings

if TYPE_CHECKING:
    from aftershock.gameday.live import LiveSnapshot

DASHBOARD_EXIT_S = 10.0
"""After Ctrl-C, ``aftershock dashboard`` ends within this (exit 130 if it had to be forced)."""

RunArg = Annotated[
    str,
    typer.Argument(
        help="Run directory, or a run id under <state_dir>/runs/ (e.g. 'latest').",
        show_default=False,
    ),
]


def resolve_run_dir(run: str) -> Path:
    path = Path(run)
    if path.is_dir():
        return path
    candidate = Settings().state_dir / "runs" / run
    return candidate if candidate.is_dir() else path


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def report(
    run: RunArg,
    baseline: Annotated[
        str | None,
        typer.Option(help="Another run (directory or id) to compare this one with."),
    ] = None,
    bucket_s: Annotated[
        float | None,
        typer.Option(
            help="Width of the time buckets of the charts, in seconds (default: as the run).",
            min=0.1,
        ),
    ] = None,
) -> None:
    """Regenerate a run's report (report.html, results.json, summary.md, junit.xml) from its
    event log. Exits 0 when the run's verdict passed, 1 when it failed, 2 on error."""
    from aftershock.gameday.rebuild import rebuild

    try:
        run_dir = resolve_run_dir(run)
        data = rebuild(run_dir, bucket_s=bucket_s)
        base = None if baseline is None else rebuild(resolve_run_dir(baseline), bucket_s=bucket_s)
        from aftershock.report import Findings, write_reports

        paths = write_reports(run_dir, data, base)
    except GamedayError as exc:
        _fail(exc)
    for p in paths:
        typer.echo(str(p))
    findings = Findings(data.records())
    if findings.verdict is None:
        typer.echo("no verdict: the log holds no analysable client events", err=True)
    else:
        typer.echo(f"verdict {findings.state}", err=True)
        for reason in findings.verdict.reasons:
            typer.echo(f"  - {reason}", err=True)
    raise typer.Exit(findings.exit_code)


def traces(
    run: RunArg,
    failed: Annotated[bool, typer.Option("--failed", help="Only sessions that failed.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Only sessions of this tenant.")] = None,
    session: Annotated[str | None, typer.Option(help="Only this session.")] = None,
    limit: Annotated[int, typer.Option(help="How many session traces to print.", min=1)] = 1,
    max_events: Annotated[
        int, typer.Option(help="Session events shown per span (first and last halves).", min=0)
    ] = 8,
) -> None:
    """Print session traces as trees, with the faults active at each span and the session's
    events beside the span they belong to. Exits 1 when no trace matches."""
    from aftershock.gameday.traces import load_run, render_trace

    try:
        chosen, windows, matched, total = load_run(
            resolve_run_dir(run), failed=failed, tenant=tenant, session=session, limit=limit
        )
    except GamedayError as exc:
        _fail(exc)
    if not chosen:
        typer.echo(f"no session trace matches (of {total} in the run)", err=True)
        raise typer.Exit(1)
    for t in chosen:
        typer.echo(render_trace(t, windows, max_events=max_events))
        typer.echo("")
    if matched > len(chosen):
        typer.echo(f"({matched - len(chosen)} more matching traces; use --limit)", err=True)


def _plain_chaos_toolkit(path: Path) -> bool:
    """A valid experiment with no Aftershock load or faults: nothing for a game day to drive,
    but a Chaos Toolkit experiment the injector runs as such."""
    from injector.validate import check_file

    exp, problems = check_file(path)
    return (
        exp is not None and not problems and not exp.aftershock.load and not exp.aftershock.faults
    )


def run(
    experiment: Annotated[
        Path, typer.Argument(help="Experiment file (.yaml, .yml or .json).", show_default=False)
    ],
    runs_dir: Annotated[
        Path | None,
        typer.Option(help="Where run directories go (default: <state_dir>/runs)."),
    ] = None,
    sample: Annotated[
        bool | None,
        typer.Option(
            "--sample/--no-sample",
            help="Start the sample chat system on free ports (default: when the experiment's "
            "targets are named gateway, message and redis).",
        ),
    ] = None,
    bug: Annotated[
        list[str] | None,
        typer.Option(help="Switch a defect of the sample system on (isolation, slow_recovery)."),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Show the live dashboard.")
    ] = True,
    line_every_s: Annotated[
        float, typer.Option(help="Summary line interval when stderr is not a terminal.", min=0.1)
    ] = 5.0,
    trace_every: Annotated[
        int, typer.Option(help="Trace every n-th round trip of a session (0: none).", min=0)
    ] = 20,
    trace_sessions: Annotated[
        float,
        typer.Option(
            help="Share of sessions traced (0 to 1; a session is one trace).", min=0.0, max=1.0
        ),
    ] = 1.0,
    workers: Annotated[
        int,
        typer.Option(
            help="Analyse with this many analyzer worker processes (aftershock analyze) "
            "instead of in process.",
            min=0,
        ),
    ] = 0,
    continuous: Annotated[
        bool,
        typer.Option(
            "--continuous",
            help="Run rounds of low-rate load with one rotating fault each, until interrupted.",
        ),
    ] = False,
    round_s: Annotated[
        float, typer.Option(help="--continuous: length of a round in seconds.", min=5)
    ] = 60.0,
    rate_scale: Annotated[
        float, typer.Option(help="--continuous: factor on every send rate.", min=0.001, max=1)
    ] = 0.1,
    rounds: Annotated[
        int, typer.Option(help="--continuous: stop after this many rounds (0: never).", min=0)
    ] = 0,
    keep_runs: Annotated[
        int, typer.Option(help="--continuous: run directories and results kept.", min=1)
    ] = 5,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="--continuous: serve Prometheus metrics on this port (bind host)."),
    ] = None,
    metrics_linger_s: Annotated[
        float,
        typer.Option(
            help="--continuous with --rounds: after the last round, serve its metrics until "
            "they are scraped once more, for at most this many seconds.",
            min=0,
        ),
    ] = 15.0,
    ignore_safeguard: Annotated[
        list[str] | None,
        typer.Option(
            help="Leave the experiment's safeguards on this metric out (repeatable), e.g. "
            "isolation_violations to let a game day play out; SLOs still judge it."
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the verdict and the figures as one JSON document on stdout (console "
            "lines stay on stderr).",
        ),
    ] = False,
    summary_export: Annotated[
        Path | None,
        typer.Option(help="Also write that JSON document to this file.", dir_okay=False),
    ] = None,
    interrupt_timeout_s: Annotated[
        float,
        typer.Option(
            help="After a Ctrl-C, how long the run may take to end in order before it stops "
            "waiting (as on a second Ctrl-C): faults reverted, processes killed, partial report.",
            min=1,
        ),
    ] = 60.0,
) -> None:
    """Run a game day: load, faults, live analysis and dashboard, then the verdict and the
    report in runs/<run_id>/. Exit status: 0 pass, 1 fail (failing SLOs named), 2 error or
    interrupted."""
    import asyncio
    import logging

    from aftershock.gameday.run import GamedayOptions, run_gameday
    from aftershock.gameday.stopping import ExitWatchdog

    # The sample system logs every dependency it loses; under faults that is expected and the
    # dashboard already shows it.
    logging.getLogger("examples").setLevel(logging.ERROR)

    known_bugs = {"isolation", "slow_recovery"}
    for b in bug or []:
        if b not in known_bugs:
            raise typer.BadParameter(
                f"unknown defect {b!r}; known: {', '.join(sorted(known_bugs))}", param_hint="--bug"
            )
    metrics = {"error_rate", "availability", "p99_latency", "isolation_violations",
               "episode_duration"}  # fmt: skip
    for m in ignore_safeguard or []:
        if m not in metrics:
            raise typer.BadParameter(
                f"unknown safeguard metric {m!r}; known: {', '.join(sorted(metrics))}",
                param_hint="--ignore-safeguard",
            )
    options = GamedayOptions(
        runs_dir=runs_dir,
        sample=sample,
        bugs=tuple(bug or ()),
        dashboard=dashboard,
        line_every_s=line_every_s,
        trace_every=trace_every,
        trace_sessions=trace_sessions,
        ignore_safeguards=tuple(ignore_safeguard or ()),
        workers=workers,
        interrupt_timeout_s=interrupt_timeout_s,
        # armed only once interrupted; it stays armed through the event loop's shutdown
        watchdog=ExitWatchdog(),
    )
    plain = _plain_chaos_toolkit(experiment)
    if continuous and plain:
        _fail(
            GamedayError(
                f"{experiment}: a Chaos Toolkit experiment without load or faults has no "
                "rounds to rotate; run it once with `aftershock run` or `aftershock injector run`"
            )
        )
    if continuous:
        if json_out or summary_export is not None:
            raise typer.BadParameter(
                "a summary is for one game day; continuous rounds are on --metrics-port",
                param_hint="--json/--summary-export",
            )
        from aftershock.gameday.continuous import Continuous, ContinuousOptions
        from aftershock.gameday.run import load_plan

        copts = ContinuousOptions(
            round_s=round_s,
            rate_scale=rate_scale,
            rounds=rounds,
            keep_runs=keep_runs,
            metrics_port=metrics_port,
            linger_s=metrics_linger_s,
        )
        try:
            plan = load_plan(experiment, options)
            code = asyncio.run(Continuous(plan, Settings(), options, copts).run())
        except GamedayError as exc:
            _fail(exc)
        raise typer.Exit(code)
    if plain:
        from injector.cli import run_cmd

        typer.echo(
            f"{experiment}: a Chaos Toolkit experiment without load or faults; running it as "
            "`aftershock injector run` does (journal.json in the current directory)",
            err=True,
        )
        run_cmd(experiment)
    try:
        outcome = asyncio.run(run_gameday(experiment, Settings(), options))
    except GamedayError as exc:
        if json_out or summary_export is not None:
            from aftershock.cli.summary import error_document, render, write_summary

            doc = error_document(str(exc))
            if summary_export is not None:
                write_summary(doc, summary_export)
            if json_out:
                typer.echo(render(doc))
        _fail(exc)
    except KeyboardInterrupt:  # a Ctrl-C after the run let go of the signal
        typer.echo("interrupted", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"verdict {outcome.verdict} ({outcome.status}) in {outcome.wall_s:.1f} s; report: "
        f"{outcome.run_dir}/report.html",
        err=True,
    )
    if outcome.failing:
        typer.echo(f"failing SLOs: {', '.join(outcome.failing)}", err=True)
    for reason in outcome.reasons:
        typer.echo(f"  - {reason}", err=True)
    if json_out or summary_export is not None:
        from aftershock.cli.summary import render, summary_document, write_summary

        try:
            doc = summary_document(outcome)
        except GamedayError as exc:
            _fail(exc)
        if summary_export is not None:
            write_summary(doc, summary_export)
        if json_out:
            typer.echo(render(doc))
    raise typer.Exit(outcome.exit_code)


def dashboard(
    experiment_id: Annotated[
        str, typer.Argument(help="The running experiment's id.", show_default=False)
    ],
    redis_url: Annotated[
        str | None, typer.Option(help="Redis of the game day (default: AFTERSHOCK_REDIS_URL).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one summary line and exit.")] = False,
    line_every_s: Annotated[
        float, typer.Option(help="Summary line interval when stdout is not a terminal.", min=0.1)
    ] = 5.0,
) -> None:
    """Watch a game day running elsewhere: the live dashboard, read from Redis (the run's own
    snapshot, else the analyzers' live results). Exits 1 when Redis knows nothing of it; Ctrl-C
    ends it (0), within 10 s whatever Redis does."""
    import asyncio

    from aftershock.gameday.dashboard import Dashboard, summary_line, unwrapped_console
    from aftershock.gameday.remote import fetch_snapshot
    from aftershock.gameday.stopping import ExitWatchdog, cancel_and_wait

    url = redis_url or Settings().redis_url
    if url is None:
        raise typer.BadParameter("no Redis: pass --redis-url or set AFTERSHOCK_REDIS_URL")

    async def go() -> int:
        from redis.asyncio import Redis

        redis = Redis.from_url(url)
        try:
            first = await fetch_snapshot(redis, experiment_id)
            if first is None:
                typer.echo(f"nothing in Redis about experiment {experiment_id!r}", err=True)
                return 1
            if once:
                typer.echo(summary_line(first))
                return 0
            latest: list[LiveSnapshot] = [first]

            async def poll() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    snap = await fetch_snapshot(redis, experiment_id)
                    if snap is not None:
                        latest[0] = snap

            console = unwrapped_console(stderr=False)
            async with asyncio.TaskGroup() as tg:
                poller = tg.create_task(poll())
                try:
                    await Dashboard(lambda: latest[0], console, line_every_s=line_every_s).run()
                except asyncio.CancelledError:
                    # Ctrl-C: nothing here holds state worth waiting for, so the watch ends
                    # within DASHBOARD_EXIT_S whatever Redis or its client does.
                    watchdog.arm(DASHBOARD_EXIT_S, "the dashboard did not stop after Ctrl-C")
                    raise
                finally:
                    # It polls Redis, whose client can lose one cancel() (see cancel_and_wait):
                    # Ctrl-C would then never end the dashboard.
                    await cancel_and_wait([poller])
            return 0
        finally:
            await redis.aclose()

    watchdog = ExitWatchdog(status=130)

    try:
        code = asyncio.run(go())
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
