"""Reading YAML or JSON experiment files while remembering where every value sits.

Validation errors point at a path in the file (``extensions[0].faults[2].at``) and, because the
loader keeps each node's position, at its line and column too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pathlib import Path

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int
    """1-based."""
    column: int
    """1-based."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where (path in the document, line) and what."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, filename: str = "") -> str:
        where = filename
        if self.line is not None:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.path or '<top>'}: {self.message}"


@dataclass
class Document:
    """The parsed data plus the position of every value and every mapping key."""

    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    """Problems found while parsing (syntax errors, duplicate keys)."""

    def position(self, path: PathKey, *, key: bool = False) -> Position | None:
        """Position of ``path`` (of its key when ``key``), else of its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        p = path
        while True:
            if p in self.values:
                return self.values[p]
            if not p:
                return None
            p = p[:-1]


def render_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.values[path] = _pos(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.doc.problems.append(
                        Problem(
                            render_path(path), "mapping keys must be plain text", *_lc(key_node)
                        )
                    )
                    continue
                skey = key if isinstance(key, str) else str(key).lower()
                if skey in out:
                    self.doc.problems.append(
                        Problem(
                            render_path((*path, skey)),
                            f"duplicate key {skey!r} (the later value would silently win)",
                            *_lc(key_node),
                        )
                    )
                self.doc.keys[(*path, skey)] = _pos(key_node)
                out[skey] = self.build(value_node, (*path, skey))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _lc(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def parse_text(text: str, *, json_first: bool = False) -> Document:
    """Parse YAML (JSON is parsed as YAML, a superset, to get positions)."""
    doc = Document(data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.problems.append(Problem("", "the file is empty", 1, 1))
            return doc
        doc.data = _Walker(loader, doc).build(node, ())
    except yaml.MarkedYAMLError as exc:
        if json_first:
            return _parse_json(text)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        msg = f"not valid YAML: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        doc.problems.append(Problem("", msg, line, col))
    except yaml.YAMLError as exc:
        doc.problems.append(Problem("", f"not valid YAML: {exc}", 1, 1))
    finally:
        loader.dispose()
    return doc


def _parse_json(text: str) -> Document:
    try:
        return Document(data=json.loads(text))
    except json.JSONDecodeError as exc:
        return Document(
            data=None,
            problems=[Problem("", f"not valid JSON: {exc.msg}", exc.lineno, exc.colno)],
        )


def read_document(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Document(data=None, problems=[Problem("", f"cannot read file: {exc.strerror}")])
    except UnicodeDecodeError:
        return Document(data=None, problems=[Problem("", "the file is not UTF-8 text")])
    return parse_text(text, json_first=path.suffix.lower() == ".json")
