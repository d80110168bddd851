"""Load profile files: YAML or JSON with ``targets`` and ``load``, validated with named places.

Every problem is reported as ``<file>:<line>: <path.in.file>: <message>`` (line when the file is
YAML or JSON and the path can be found), so a bad script step is named exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from generators.errors import PlanError
from generators.runner import validate_plan
from schemas.base import Frozen
from schemas.load import LoadProfile  # noqa: TC001 - pydantic needs it at runtime
from schemas.targets import Target, TargetGraph

if TYPE_CHECKING:
    from pathlib import Path


class RunFile(Frozen):
    """What ``aftershock generate`` runs. Other top-level keys (an experiment's) are ignored."""

    targets: list[Target] = Field(min_length=1)
    load: list[LoadProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross(self) -> RunFile:
        TargetGraph(targets=self.targets)
        return self

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


class ProfileFileError(PlanError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path}: invalid load profile file:\n  " + "\n  ".join(problems))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` in a composed YAML tree."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_run_file(path: Path) -> RunFile:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileFileError(path, [f"cannot read: {exc.strerror}"]) from exc
    try:
        tree = yaml.compose(text)  # YAML is a superset of JSON: one parser, lines for both
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileFileError(path, [f"not valid YAML/JSON: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ProfileFileError(path, ["the file must hold a mapping with 'targets' and 'load'"])
    relevant = {k: v for k, v in data.items() if k in ("targets", "load")}
    try:
        run = RunFile.model_validate(relevant)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
            line = _line_of(tree, loc)
            at = f"line {line}: " if line else ""
            problems.append(f"{at}{_dotted(loc)}: {err['msg']}")
        raise ProfileFileError(path, problems) from exc
    problems = []
    for i, prof in enumerate(run.load):
        where: tuple[int | str, ...] = ("load", i, "target")
        try:
            target = run.target(prof.target)
        except KeyError:
            known = ", ".join(t.name for t in run.targets)
            problems.append(
                f"line {_line_of(tree, where)}: {_dotted(where)}: unknown target "
                f"{prof.target!r} (known: {known})"
            )
            continue
        try:
            validate_plan(prof, target)
        except PlanError as exc:
            problems.append(f"line {_line_of(tree, ('load', i))}: load[{i}]: {exc}")
    if problems:
        raise ProfileFileError(path, problems)
    return run


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the discriminator value (e.g. "send") to the location of union members
    return isinstance(part, str) and part in (
        "connect",
        "subscribe",
        "send",
        "think",
        "disconnect",
        "fixed",
        "uniform",
        "normal",
    )
