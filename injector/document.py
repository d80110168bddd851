"""Reading YAML or JSON experiment files while remembering where every value sits.

Validation errors point at a path in the file (``extensions[0].faults[2].at``) and, because the
loader keeps each node's position, at its line and column too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

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


MAX_BYTES = 1 << 20
"""Largest experiment file read (1 MiB); real experiments are a few KB."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_VALUES = 100_000
"""Most values the document may hold once aliases are expanded (a "billion laughs" file
stops here instead of exhausting memory)."""
MAX_NUMBER_CHARS = 100
"""Longest number literal: longer ones are refused rather than converted."""

_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


class TooComplex(yaml.MarkedYAMLError):
    """The document breaks one of the loader's limits; it carries the place where."""


class _DepthLimit:
    """Bounds nesting while composing (the composer recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooComplex(
                    problem=f"nested more than {MAX_DEPTH} levels deep",
                    problem_mark=self.peek_event().start_mark,  # type: ignore[attr-defined]
                )
            return Composer.compose_node(self, parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


try:  # libyaml scans and parses ten times faster; composing stays in Python, bounded
    from yaml._yaml import CParser

    class _Loader(_DepthLimit, Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(_DepthLimit, yaml.SafeLoader):  # type: ignore[no-redef]
        pass


class _Walker:
    """Builds plain data from the node graph, keeping positions, with limits on what aliases
    can expand to (a node met again on its own path is a self-reference)."""

    def __init__(self, loader: _Loader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.built = 0
        self.open: set[int] = set()

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            raise TooComplex(
                problem=f"the document expands to more than {MAX_VALUES} values "
                "(aliases of aliases?)",
                problem_mark=node.start_mark,
            )
        if len(path) > MAX_DEPTH:
            raise TooComplex(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=node.start_mark
            )
        if id(node) in self.open:
            raise TooComplex(
                problem="an alias refers to the anchor it is inside (a value cannot contain "
                "itself)",
                problem_mark=node.start_mark,
            )
        self.doc.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self.open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        self._merge(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                self.doc.problems.append(
                    Problem(render_path(path), "mapping keys must be plain text", *_lc(key_node))
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

    def _merge(self, node: yaml.MappingNode) -> None:
        # ``<<`` merge keys: flatten_mapping recurses through merged mappings, so a merge that
        # includes itself would never end.
        seen: set[int] = set()
        todo = [node]
        while todo:
            n = todo.pop()
            if id(n) in seen:
                raise TooComplex(
                    problem="a '<<' merge includes the mapping it is in",
                    problem_mark=node.start_mark,
                )
            seen.add(id(n))
            for k, v in n.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    merged = [v] if isinstance(v, yaml.MappingNode) else v.value
                    todo.extend(x for x in merged if isinstance(x, yaml.MappingNode))
            if len(seen) > MAX_VALUES:
                raise TooComplex(problem="too many merges", problem_mark=node.start_mark)
        self.loader.flatten_mapping(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise TooComplex(problem="expected a plain value here", problem_mark=node.start_mark)
        if node.tag in _NUMBER_TAGS and len(str(node.value)) > MAX_NUMBER_CHARS:
            raise TooComplex(
                problem=f"a number longer than {MAX_NUMBER_CHARS} characters",
                problem_mark=node.start_mark,
            )
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError) as exc:
            raise TooComplex(
                problem=f"cannot read this value: {exc}", problem_mark=node.start_mark
            ) from None


def _lc(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def parse_text(text: str, *, json_first: bool = False) -> Document:
    """Parse YAML (JSON is parsed as YAML, a superset, to get positions). Never raises: every
    failure, including breaking the loader's limits, is a problem with a line."""
    doc = Document(data=None)
    if len(text) > MAX_BYTES:
        doc.problems.append(Problem("", f"the file is larger than {MAX_BYTES} bytes", 1, 1))
        return doc
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            doc.problems.append(Problem("", "the file is empty", 1, 1))
            return doc
        doc.data = _Walker(loader, doc).build(node, ())
    except yaml.MarkedYAMLError as exc:
        if json_first and not isinstance(exc, TooComplex):
            return _parse_json(text)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        kind = "too complex" if isinstance(exc, TooComplex) else "not valid YAML"
        msg = f"{kind}: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        doc.data = None
        doc.problems.append(Problem("", msg, line, col))
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        doc.problems.append(
            Problem("", f"not valid YAML: character {char!r} is not allowed", line, col)
        )
    except yaml.YAMLError as exc:
        doc.problems.append(Problem("", f"not valid YAML: {exc}", 1, 1))
    except RecursionError:
        doc.data = None
        doc.problems.append(Problem("", "too complex: nested too deeply", 1, 1))
    finally:
        if loader is not None:
            loader.dispose()
    return doc


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _parse_json(text: str) -> Document:
    try:
        return Document(data=json.loads(text, parse_constant=_no_constant))
    except json.JSONDecodeError as exc:
        return Document(
            data=None,
            problems=[Problem("", f"not valid JSON: {exc.msg}", exc.lineno, exc.colno)],
        )
    except (ValueError, RecursionError) as exc:
        return Document(data=None, problems=[Problem("", f"not valid JSON: {exc}", 1, 1)])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_document(path: Path) -> Document:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return Document(
                data=None,
                problems=[Problem("", f"the file is larger than {MAX_BYTES} bytes", 1, 1)],
            )
        text = raw.decode("utf-8")
    except OSError as exc:
        return Document(data=None, problems=[Problem("", f"cannot read file: {exc.strerror}")])
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return Document(
            data=None,
            problems=[
                Problem(
                    "", f"the file is not UTF-8 text (byte {raw[exc.start]:#04x})", line, column
                )
            ],
        )
    return parse_text(text, json_first=path.suffix.lower() == ".json")
