"""``aftershock run --json`` / ``--summary-export``: a run's outcome as one JSON document.

Made from the run's own records (the result records in ``results.json``, which the run wrote
from the analyzers' fold) and its outcome; nothing is recomputed here. Shape::

    {"format": "aftershock.summary/1", "experiment_id", "run_id", "title", "status", "note",
     "exit_code", "outcome": "PASS" | "FAIL" | "ERROR", "wall_s", "run_dir", "report",
     "failing": [check names], "reasons": [...],
     "verdict": the run's verdict record or null, "phase_verdicts": [...],
     "figures": {"availability", "latency", "load", "integrity", "episodes",
                 "isolation_groups", "isolation_examples", "cascades": [result records],
                 "isolation_violations": the exact count (the groups' counts summed)}}

A game day that could not run at all (a bad experiment file, a service that would not start)
still gives a document: ``exit_code`` 2, ``outcome`` ``ERROR``, and ``error`` saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from aftershock.report.files import REPORT_FILE, read_results
from aftershock.report.model import Findings
from schemas.results import LoadSummary

if TYPE_CHECKING:
    from pathlib import Path

    from aftershock.gameday.run import RunOutcome
    from schemas.base import Frozen

OUTCOME = {0: "PASS", 1: "FAIL", 2: "ERROR"}


def _dump(records: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in records:
        model: Frozen = r
        out.append(model.model_dump(mode="json"))
    return out


def summary_document(outcome: RunOutcome) -> dict[str, Any]:
    """The document for a finished run (its directory holds ``results.json``)."""
    doc: dict[str, Any] = {
        "format": "aftershock.summary/1",
        "exit_code": outcome.exit_code,
        "outcome": OUTCOME.get(outcome.exit_code, "ERROR"),
        "status": outcome.status,
        "wall_s": round(outcome.wall_s, 3),
        "failing": list(outcome.failing),
        "reasons": list(outcome.reasons),
        "run_dir": None,
        "report": None,
        "verdict": None,
        "phase_verdicts": [],
        "figures": {},
    }
    if outcome.run_dir is None:
        return doc
    data = read_results(outcome.run_dir)
    f = Findings(data.records())
    doc.update(
        experiment_id=data.meta.experiment_id,
        run_id=data.meta.run_id,
        title=data.meta.title,
        note=data.meta.note,
        run_dir=str(outcome.run_dir),
        report=str(outcome.run_dir / REPORT_FILE),
        verdict=None if f.verdict is None else f.verdict.model_dump(mode="json"),
        phase_verdicts=_dump(f.phase_verdicts),
        figures={
            "availability": _dump(f.availability),
            "latency": _dump(f.latency),
            "load": _dump([r for r in f.all if isinstance(r, LoadSummary)]),
            "integrity": _dump(f.integrity),
            "episodes": _dump(f.episodes),
            "isolation_violations": f.violation_count,
            "isolation_groups": _dump(f.violation_groups),
            "isolation_examples": _dump(f.violations),
            "cascades": _dump(f.cascades),
        },
    )
    return doc


def error_document(error: str) -> dict[str, Any]:
    """The document for a game day that could not run (exit status 2): no run, no figures."""
    return {
        "format": "aftershock.summary/1",
        "exit_code": 2,
        "outcome": "ERROR",
        "status": "error",
        "error": error,
        "failing": [],
        "reasons": [error],
        "run_dir": None,
        "report": None,
        "verdict": None,
        "phase_verdicts": [],
        "figures": {},
    }


def write_summary(doc: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def render(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
