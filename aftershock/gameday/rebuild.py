"""Recompute a run's report data from its event log, the way ``aftershock replay`` does.

Every result record, the time series and the verdict included, comes from the analyzers'
pure core fed with the run's local log under the analyzer configuration the run was judged with
(``analysis.json``); the run verdict is settled with how the run ended (``run.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from aftershock.report.errors import RunDirError
from aftershock.report.files import ANALYSIS_FILE, iter_events, read_meta
from aftershock.report.model import RunData
from analyzers.core import Analyzer, AnalyzerConfig
from spine.errors import first_problem

if TYPE_CHECKING:
    from pathlib import Path


def read_analysis_config(run_dir: Path) -> AnalyzerConfig:
    """The configuration the run was judged with (``analysis.json``; the defaults when the run
    has none); :class:`RunDirError` naming the file and the first thing wrong otherwise."""
    path = run_dir / ANALYSIS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return AnalyzerConfig()
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return AnalyzerConfig.model_validate_json(raw)
    except ValidationError as exc:
        raise RunDirError(f"{path}: not an analyzer configuration: {first_problem(exc)}") from exc


def rebuild(run_dir: Path, *, bucket_s: float | None = None) -> RunData:
    """``bucket_s``: the time series' bucket width, when not the one the run was judged with."""
    meta = read_meta(run_dir)
    config = read_analysis_config(run_dir)
    if bucket_s is not None:
        config = config.model_copy(update={"series_bucket_s": bucket_s})
    analyzer = Analyzer(meta.experiment_id, config)
    batch = []
    for ev in iter_events(run_dir):
        if ev.experiment_id != meta.experiment_id or ev.kind.startswith("result."):
            continue
        batch.append(ev)
        if len(batch) >= 2000:
            analyzer.ingest(batch)
            batch = []
    analyzer.ingest(batch)
    analyzer.finish()
    return RunData.of(meta, analyzer.results())
