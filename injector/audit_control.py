"""A Chaos Toolkit control that keeps an audit trail: one JSON line per hook, in a file.

Declare it in an experiment (it runs the same under ``chaos run`` and ``aftershock injector
run``)::

    controls:
      - name: audit
        provider: {type: python, module: injector.audit_control, arguments: {path: audit.jsonl}}

Each line names the hook, what it ran around (activity name or title) and its outcome; secret
values never appear, only the names of the secret scopes the run was given.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_configured: list[str] = []


def _write(path: str, hook: str, context: Any, **fields: Any) -> None:
    what = ""
    if isinstance(context, dict):
        what = str(context.get("name") or context.get("title") or "")
    line = json.dumps({"hook": hook, "context": what, **fields}, sort_keys=True)
    with _lock, Path(path).open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _runs(state: Any) -> list[list[str]]:
    if not isinstance(state, list):
        return []
    return [[str(r.get("activity", {}).get("name")), str(r.get("status"))] for r in state]


def configure_control(
    path: str, experiment: dict[str, Any] | None = None, secrets: Any = None
) -> None:
    _configured.append(path)
    _write(
        path,
        "configure_control",
        experiment,
        secret_scopes=sorted(secrets or {}),
    )


def cleanup_control() -> None:
    while _configured:
        _write(_configured.pop(), "cleanup_control", None)


def before_experiment_control(context: dict[str, Any], path: str) -> None:
    _write(path, "before_experiment_control", context)


def after_experiment_control(context: dict[str, Any], state: Any, path: str) -> None:
    status = state.get("status") if isinstance(state, dict) else None
    deviated = state.get("deviated") if isinstance(state, dict) else None
    _write(path, "after_experiment_control", context, status=status, deviated=deviated)


def before_hypothesis_control(context: dict[str, Any], path: str) -> None:
    _write(path, "before_hypothesis_control", context)


def after_hypothesis_control(context: dict[str, Any], state: Any, path: str) -> None:
    met = state.get("steady_state_met") if isinstance(state, dict) else None
    _write(path, "after_hypothesis_control", context, steady_state_met=met)


def before_method_control(context: dict[str, Any], path: str) -> None:
    _write(path, "before_method_control", context)


def after_method_control(context: dict[str, Any], state: Any, path: str) -> None:
    _write(path, "after_method_control", context, runs=_runs(state))


def before_rollback_control(context: dict[str, Any], path: str) -> None:
    _write(path, "before_rollback_control", context)


def after_rollback_control(context: dict[str, Any], state: Any, path: str) -> None:
    _write(path, "after_rollback_control", context, runs=_runs(state))


def before_activity_control(context: dict[str, Any], path: str) -> None:
    _write(path, "before_activity_control", context)


def after_activity_control(context: dict[str, Any], state: Any, path: str) -> None:
    status = state.get("status") if isinstance(state, dict) else None
    _write(path, "after_activity_control", context, status=status)
