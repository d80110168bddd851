"""Recompute a run's report data from its event log, the way ``aftershock replay`` does.

The result records come from the analyzers' pure core fed with ``events.jsonl`` under the
analyzer configuration the run was judged with (``analysis.json``); the time series and fault
windows from :class:`aftershock.report.series.SeriesBuilder` over the same events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from aftershock.report.errors import RunDirError
from aftershock.report.files import ANALYSIS_FILE, iter_events, read_meta
from aftershock.report.model import RunData
from aftershock.report.series import SeriesBuilder
from analyzers.core import Analyzer, AnalyzerConfig

if TYPE_CHECKING:
    from pathlib import Path


def read_analysis_config(run_dir: Path) -> AnalyzerConfig:
    path = run_dir / ANALYSIS_FILE
    if not path.exists():
        return AnalyzerConfig()
    try:
        return AnalyzerConfig.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise RunDirError(f"{path}: not an analyzer configuration: {exc}") from exc


def rebuild(run_dir: Path, *, bucket_s: float = 1.0) -> RunData:
    meta = read_meta(run_dir)
    analyzer = Analyzer(meta.experiment_id, read_analysis_config(run_dir))
    series = SeriesBuilder(bucket_s)
    batch = []
    for ev in iter_events(run_dir):
        if ev.experiment_id != meta.experiment_id or ev.kind.startswith("result."):
            continue
        series.add(ev)
        batch.append(ev)
        if len(batch) >= 2000:
            analyzer.ingest(batch)
            batch = []
    analyzer.ingest(batch)
    analyzer.finish()
    return RunData.of(meta, analyzer.results(), series.build())
