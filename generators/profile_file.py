"""Load profile files: YAML or JSON with ``targets`` and ``load``, validated with named places.

Every problem is reported as ``<file>:<line>: <path.in.file>: <message>`` (line when the file is
YAML or JSON and the path can be found), so a bad script step is named exactly. Whatever the
file holds, reading it raises :class:`ProfileFileError` and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import yaml
from pydantic import Field, ValidationError, field_validator

from generators.engines.base import Endpoint
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

    @field_validator("targets")
    @classmethod
    def _graph(cls, targets: list[Target]) -> list[Target]:
        # On the field, so that a duplicate name or a dependency cycle is named as targets'.
        TargetGraph(targets=targets)
        return targets

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
    """1-based line of the deepest node along ``loc`` in a composed YAML tree (None without
    a tree)."""
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


def _parse(path: Path) -> tuple[Any, yaml.Node | None]:
    """The file's data, and its YAML node tree (for lines) when PyYAML can compose it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileFileError(path, [f"cannot read: {exc.strerror}"]) from exc
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x})"
        raise ProfileFileError(path, [problem]) from None
    # JSON is read as JSON: PyYAML (YAML 1.1) would take 1e3 for text, refuse a tab between
    # tokens and split an escaped surrogate pair. YAML still gives the lines where it can.
    try:
        data: Any = orjson.loads(text)
        is_json = True
    except orjson.JSONDecodeError:
        is_json = False
    try:
        tree = yaml.compose(text)
        if not is_json:
            data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if not is_json:
            raise ProfileFileError(path, [f"not valid YAML/JSON: {exc}"]) from None
        tree = None
    except RecursionError:
        if not is_json:
            raise ProfileFileError(path, ["not valid YAML/JSON: nested too deeply"]) from None
        tree = None
    return data, tree


def load_run_file(path: Path) -> RunFile:
    """Read and check a run file; raises :class:`ProfileFileError` naming the file and, for
    each problem, its place in it."""
    data, tree = _parse(path)
    if not isinstance(data, dict):
        raise ProfileFileError(path, ["the file must hold a mapping with 'targets' and 'load'"])
    run, problems = check_run_data(data, tree)
    if run is None:
        raise ProfileFileError(path, problems)
    return run


def check_run_data(
    data: dict[Any, Any], tree: yaml.Node | None = None, within: tuple[str, ...] = ()
) -> tuple[RunFile | None, list[str]]:
    """The run file that ``data`` (its top-level mapping) holds, or None and the problems found.

    Each problem names its place in the document (after ``within``, the place of the document
    itself) and, given the document's YAML ``tree``, its line."""

    def place(loc: tuple[int | str, ...]) -> str:
        line = _line_of(tree, loc)
        where = _dotted((*within, *loc))
        return f"line {line}: {where}" if line else where

    relevant = {k: v for k, v in data.items() if k in ("targets", "load")}
    try:
        run = RunFile.model_validate(relevant)
    except ValidationError as exc:
        return None, [
            f"{place(tuple(p for p in err['loc'] if not _is_union_tag(p)))}: {err['msg']}"
            for err in exc.errors()
        ]
    problems = []
    unusable = set()
    for j, t in enumerate(run.targets):
        # The models read addresses with the generators' grammar; a listener the load connects
        # to also needs its port (a model's listen may leave it to the system: port 0).
        try:
            if t.listen is not None:
                Endpoint.parse(t.listen)
        except PlanError as exc:
            problems.append(f"{place(('targets', j, 'listen'))}: {exc}")
            unusable.add(t.name)
    for i, prof in enumerate(run.load):
        if prof.target in unusable:
            continue
        try:
            target = run.target(prof.target)
        except KeyError:
            known = ", ".join(t.name for t in run.targets)
            problems.append(
                f"{place(('load', i, 'target'))}: unknown target {prof.target!r} (known: {known})"
            )
            continue
        try:
            validate_plan(prof, target)
        except PlanError as exc:
            problems.append(f"{place(('load', i))}: {exc}")
    return (None, problems) if problems else (run, [])


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
