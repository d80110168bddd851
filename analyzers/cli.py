"""``aftershock analyze | replay | export | results``: the analyzers' commands."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml
from pydantic import ValidationError

from analyzers.core import AnalyzerConfig
from analyzers.errors import AnalyzerError, InputError
from analyzers.report import canonical, render
from spine import stackstate
from spine.errors import first_problem
from spine.settings import Settings

app = typer.Typer(no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Analyzer configuration (YAML or JSON, fields of AnalyzerConfig: thresholds, "
        "SLOs, target graph). A run's own configuration, recorded in its log, is used "
        "unless this is given.",
        exists=True,
        dir_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One result record per line, as JSON.")]


_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean"}


def load_config(path: Path | None) -> AnalyzerConfig:
    """An analyzer configuration file (YAML or JSON: a mapping of AnalyzerConfig's fields; an
    empty file is the defaults); :class:`InputError` naming the file and what is wrong."""
    if path is None:
        return AnalyzerConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        # JSON first: YAML reads the escaped surrogate pair of a JSON string ("\ud83d\ude00",
        # as json.dumps writes one) as two lone surrogates.
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = _load_yaml(path, raw)
    if data is None:  # an empty file
        data = {}
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: an analyzer configuration is a mapping of settings, "
            f"not {_KINDS.get(type(data), type(data).__name__)}"
        )
    try:
        return AnalyzerConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {first_problem(exc)}") from exc


def _load_yaml(path: Path, raw: bytes) -> object:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    except (ValueError, LookupError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these on a value they cannot make (a date 2020-13-45).
        raise InputError(f"{path}: a value cannot be read: {exc!r}") from exc


def parse_start(text: str) -> Literal["stored", "earliest"] | int:
    """``--start-at``: ``stored``, ``earliest`` or a non-negative time in ms since the epoch."""
    if text == "stored":
        return "stored"
    if text == "earliest":
        return "earliest"
    if text.isascii() and text.isdigit() and len(text) <= 16:
        return int(text)
    raise InputError(f"--start-at: expected stored, earliest or ms since the epoch, got {text!r}")


def resolve(settings: Settings) -> tuple[str, str]:
    """Kafka bootstrap and Redis URL: from settings, else from a running ``stack up``."""
    kafka, redis = settings.kafka_bootstrap, settings.redis_url
    if kafka is None or redis is None:
        for _, record in stackstate.read_records(settings.state_dir):
            if record is not None and not stackstate.is_stale(record):
                kafka = kafka or record.kafka_bootstrap
                redis = redis or record.redis_url
                break
    if kafka is None or redis is None:
        raise typer.BadParameter(
            "no Kafka/Redis: set AFTERSHOCK_KAFKA_BOOTSTRAP and AFTERSHOCK_REDIS_URL, "
            "or start the embedded stack with `aftershock stack up --detach`"
        )
    return kafka, redis


def _emit(results: list, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        for r in canonical(results):
            typer.echo(r.model_dump_json())
    else:
        typer.echo(render(results), nl=False)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command()
def analyze(
    config: ConfigOpt = None,
    app_id: Annotated[
        str,
        typer.Option(
            help="Consumer group and internal topic prefix; workers sharing it "
            "share the partitions."
        ),
    ] = "aftershock-analyzers",
    publish_interval_s: Annotated[
        float, typer.Option(help="How often changed results go to Redis and the results topic.")
    ] = 0.25,
    checkpoint_interval_s: Annotated[
        float,
        typer.Option(
            help="Least time between state snapshots to the changelog (records are acked "
            "after each); a snapshot that takes longer than a tenth of this widens the gap."
        ),
    ] = 5.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port.")
    ] = None,
    start_at: Annotated[
        str,
        typer.Option(
            help="Where a new group starts reading the events topic: `stored` (where the "
            "stored results say analysis stopped), `earliest`, or a time in ms since the epoch."
        ),
    ] = "stored",
) -> None:
    """Start an analyzer worker (Faust) on the events topic; runs until interrupted."""
    from analyzers.worker import AnalyzerWorker, WorkerOptions

    try:
        cfg = load_config(config)
        start = parse_start(start_at)
    except AnalyzerError as exc:
        _fail(exc)
    settings = Settings()
    kafka, redis = resolve(settings)
    settings = settings.model_copy(update={"kafka_bootstrap": kafka, "redis_url": redis})
    worker = AnalyzerWorker(
        settings,
        WorkerOptions(
            app_id=app_id,
            publish_interval_s=publish_interval_s,
            checkpoint_interval_s=checkpoint_interval_s,
            metrics_port=metrics_port,
            config=cfg,
            start_at=start,
        ),
    )
    worker.run()


@app.command()
def replay(
    experiment_id: Annotated[str, typer.Argument(help="The experiment to recompute.")],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Read events from an `aftershock export` JSONL file instead of Kafka.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="Read a run directory's local event log instead of Kafka (pass the run's "
            "analysis.json as --config to judge it as the run did).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every result of an experiment from the log and print them."""
    from analyzers.replay import analyze_batches, read_jsonl, read_run, replay_kafka

    try:
        cfg = load_config(config) if config is not None else None
        if from_file is not None:
            results = analyze_batches(experiment_id, read_jsonl(from_file), cfg)
        elif run is not None:
            results = analyze_batches(experiment_id, read_run(run, experiment_id), cfg)
        else:
            settings = Settings()
            kafka, _ = resolve(settings)
            results = asyncio.run(replay_kafka(kafka, settings.topic_events, experiment_id, cfg))
    except AnalyzerError as exc:
        _fail(exc)
    if not results:
        typer.echo(f"no events of experiment {experiment_id!r}", err=True)
    _emit(results, as_json)


@app.command()
def export(
    experiment_id: Annotated[
        str | None,
        typer.Argument(help="The experiment to export (with --run: optional, a filter)."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")] = Path(
        "events.jsonl"
    ),
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="Read a run directory's local event log instead of Kafka.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Write events as JSON lines (one event per line, each event_id once): an experiment's
    from Kafka, or a run's from its local log."""
    from analyzers.replay import export_kafka, export_run

    try:
        if run is not None:
            n = export_run(run, experiment_id, output)
        else:
            if experiment_id is None:
                typer.echo("error: name the experiment to export (or pass --run)", err=True)
                raise typer.Exit(2)
            settings = Settings()
            kafka, _ = resolve(settings)
            n = asyncio.run(export_kafka(kafka, settings.topic_events, experiment_id, output))
    except AnalyzerError as exc:
        _fail(exc)
    typer.echo(f"{n} events written to {output}", err=True)


@app.command()
def results(
    experiment_id: Annotated[str, typer.Argument(help="The experiment to show.")],
    as_json: JsonOpt = False,
) -> None:
    """Print the live results of an experiment, as analyzer workers stored them in Redis."""
    from redis.asyncio import Redis

    from spine.store import read_results

    settings = Settings()
    _, redis_url = resolve(settings)

    async def go() -> list:  # type: ignore[type-arg]
        r = Redis.from_url(redis_url)
        try:
            return await read_results(r, experiment_id)
        finally:
            await r.aclose()

    found = asyncio.run(go())
    if not found:
        typer.echo(f"no results for experiment {experiment_id!r} in Redis", err=True)
        sys.exit(1)
    _emit(found, as_json)
