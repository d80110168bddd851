"""A run directory's files: what is read from it and what the report writes into it.

``runs/<run_id>/`` holds ``events/`` (the run's event log: zstd batches in segment files,
see :mod:`spine.eventlog.runlog`; runs of earlier versions have ``events.jsonl``),
``spans.jsonl`` (session traces; ``spans-sut.jsonl`` and ``sut.log`` when the run started
the sample system), ``journal.json`` (the injector's journal), ``run.json`` (identity and
outcome), and the renderings written by :func:`write_reports`: ``results.json``,
``report.html``, ``summary.md`` and ``junit.xml``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aftershock.report.compare import compare
from aftershock.report.errors import RunDirError
from aftershock.report.html import render_html
from aftershock.report.model import RunData, RunMeta
from aftershock.report.text import render_junit, render_markdown
from schemas.events import EventAdapter
from spine.errors import EventFileError, first_problem
from spine.eventlog.jsonl import iter_jsonl
from spine.eventlog.runlog import EVENTS_DIR, iter_run_events, run_log_exists

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from schemas.events import Event

EVENTS_FILE = "events.jsonl"
"""The event log of runs written before the compressed local log (still read)."""
SPANS_FILE = "spans.jsonl"
SAMPLE_SPANS = "spans-sut.jsonl"
"""Spans of the system under test when the run started it (the sample chat system)."""
SAMPLE_LOG = "sut.log"
JOURNAL_FILE = "journal.json"
META_FILE = "run.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.md"
JUNIT_FILE = "junit.xml"
ANALYSIS_FILE = "analysis.json"
"""The analyzer configuration (SLOs, thresholds, target graph) the run was judged with."""


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def has_events(run_dir: Path) -> bool:
    return run_log_exists(run_dir / EVENTS_DIR) or (run_dir / EVENTS_FILE).exists()


def iter_events(run_dir: Path) -> Iterator[Event]:
    """The events of a run's log in the order written, each ``event_id`` once; an unreadable
    log raises :class:`RunDirError` naming the file (and line or batch)."""
    try:
        if run_log_exists(run_dir / EVENTS_DIR):
            yield from iter_run_events(run_dir / EVENTS_DIR)
        elif (run_dir / EVENTS_FILE).exists():
            seen: set[str] = set()
            for ev in iter_jsonl(run_dir / EVENTS_FILE):
                if ev.event_id not in seen:
                    seen.add(ev.event_id)
                    yield ev
        else:
            raise RunDirError(f"{run_dir} has no event log ({EVENTS_DIR}/ or {EVENTS_FILE})")
    except EventFileError as exc:
        raise RunDirError(str(exc)) from exc


def read_meta(run_dir: Path) -> RunMeta:
    """The run's identity and outcome (``run.json``); :class:`RunDirError` naming the file and
    the first thing wrong when it is missing, cut short or malformed."""
    path = run_dir / META_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunDirError(
            f"{run_dir} is not a run directory: cannot read {META_FILE}: {exc.strerror}"
        ) from exc
    try:
        return RunMeta.model_validate_json(raw)
    except ValidationError as exc:
        raise RunDirError(f"{path}: {first_problem(exc)}") from exc


def write_meta(run_dir: Path, meta: RunMeta) -> None:
    atomic_write(run_dir / META_FILE, meta.model_dump_json(indent=2) + "\n")


def read_results(run_dir: Path) -> RunData:
    """A run's ``results.json``, every result record in it valid (so :meth:`RunData.records`
    reads them); :class:`RunDirError` naming the file and the first thing wrong otherwise."""
    path = run_dir / RESULTS_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = RunData.model_validate_json(raw)
    except ValidationError as exc:
        raise RunDirError(f"{path}: {first_problem(exc)}") from exc
    for i, record in enumerate(data.results):
        try:
            EventAdapter.validate_python(record)
        except ValidationError as exc:
            raise RunDirError(f"{path}: results.{i}: {first_problem(exc)}") from exc
    return data


def write_reports(run_dir: Path, data: RunData, baseline: RunData | None = None) -> list[Path]:
    """Write results.json, report.html, summary.md and junit.xml; returns their paths."""
    comparison = None if baseline is None else compare(data, baseline)
    outputs = {
        RESULTS_FILE: data.model_dump_json() + "\n",  # compact: jq formats it for reading
        REPORT_FILE: render_html(data, comparison),
        SUMMARY_FILE: render_markdown(data, comparison),
        JUNIT_FILE: render_junit(data),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in outputs.items():
        atomic_write(run_dir / name, text)
        paths.append(run_dir / name)
    return paths
