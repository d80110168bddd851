"""``aftershock report`` and ``aftershock traces``: a run directory's report and traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aftershock.report.errors import GamedayError
from aftershock.settings import Settings

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
        float, typer.Option(help="Width of the time buckets of the charts, in seconds.", min=0.1)
    ] = 1.0,
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
    if findings.passed is False:
        typer.echo(f"verdict FAIL: {', '.join(findings.failing_checks())}", err=True)
        raise typer.Exit(1)
    if findings.passed is None:
        typer.echo("no verdict: the log holds no analysable client events", err=True)
        raise typer.Exit(2)
    typer.echo("verdict PASS", err=True)


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
    from aftershock.gameday.traces import load_run, render_trace, select

    try:
        all_traces, windows = load_run(resolve_run_dir(run))
    except GamedayError as exc:
        _fail(exc)
    chosen = select(all_traces, failed=failed, tenant=tenant, session=session)
    if not chosen:
        typer.echo(f"no session trace matches (of {len(all_traces)} in the run)", err=True)
        raise typer.Exit(1)
    for t in chosen[:limit]:
        typer.echo(render_trace(t, windows, max_events=max_events))
        typer.echo("")
    if len(chosen) > limit:
        typer.echo(f"({len(chosen) - limit} more matching traces; use --limit)", err=True)
