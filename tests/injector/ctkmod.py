"""Python providers the Chaos Toolkit comparison experiments call (under both runners)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def truthy() -> bool:
    return True


def echo(text: str) -> str:
    return text


def number() -> int:
    return 5


def status_is(expected: int, value: Any = None) -> bool:
    """A probe tolerance: gets the probe's output as ``value`` (a default, because chaos
    validate checks the arguments without it)."""
    return isinstance(value, dict) and value.get("status") == expected


def record(
    label: str, path: str, arg: Any, secrets: Any = None, configuration: Any = None
) -> dict[str, Any]:
    """Writes what it was called with (secrets included: test values only)."""
    line = {
        "label": label,
        "arg": arg,
        "secrets": secrets,
        "static": (configuration or {}).get("static"),
    }
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    return {"label": label, "secrets": secrets}


def before_method_control(context: Any, **kwargs: Any) -> None:
    """A control hook that stops the run, as chaostoolkit-lib's InterruptExecution does."""
    from chaoslib.exceptions import InterruptExecution

    raise InterruptExecution("stop before the method")


def exists(path: str) -> bool:
    return Path(path).exists()


def create(path: str) -> str:
    Path(path).write_text("created")
    return path
